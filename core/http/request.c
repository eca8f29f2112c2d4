/* HTTP requests: parsed from bytes by libhttp-parser with the limits
 * applied, and the request object's accessors. */
#include "request.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int append(char **dst, size_t *len, size_t *cap, const char *src, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 64;
        while (ncap < *len + n + 1)
            ncap *= 2;
        char *p = realloc(*dst, ncap);
        if (!p)
            return -1;
        *dst = p;
        *cap = ncap;
    }
    memcpy(*dst + *len, src, n);
    *len += n;
    (*dst)[*len] = '\0';
    return 0;
}

/* Append to a NUL-terminated string of unknown capacity. */
static int append_str(char **dst, const char *src, size_t n)
{
    size_t len = *dst ? strlen(*dst) : 0;
    size_t cap = *dst ? len + 1 : 0;
    return append(dst, &len, &cap, src, n);
}

static struct http_parse *H(http_parser *p)
{
    return (struct http_parse *)p; /* parser is the first member */
}

static int head_grow(http_parser *p, size_t n)
{
    struct http_parse *h = H(p);
    h->head_bytes += n;
    if (h->head_bytes > (size_t)h->max_head) {
        h->error_status = 431;
        h->error_text = "request head too large (http.max_head_size)";
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct http_parse *h = H(p);
    h->head_bytes = 0;
    h->in_value = 0;
    if (!h->req && !(h->req = calloc(1, sizeof *h->req)))
        return -1;
    h->started = 1;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    if (head_grow(p, n) < 0)
        return -1;
    return append_str(&H(p)->req->url, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct http_parse *h = H(p);
    struct chatd_http *r = h->req;
    if (head_grow(p, n + 4) < 0)
        return -1;
    if (h->in_value || r->n_headers == 0) {
        if (r->n_headers >= h->max_headers) {
            h->error_status = 431;
            h->error_text = "too many header lines (http.max_headers)";
            return -1;
        }
        if (r->n_headers == r->cap_headers) {
            int cap = r->cap_headers ? 2 * r->cap_headers : 16;
            struct http_header *nh = realloc(r->headers, (size_t)cap * sizeof *nh);
            if (!nh)
                return -1;
            r->headers = nh;
            r->cap_headers = cap;
        }
        r->headers[r->n_headers++] = (struct http_header){NULL, NULL};
        h->in_value = 0;
    }
    return append_str(&r->headers[r->n_headers - 1].name, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct http_parse *h = H(p);
    struct chatd_http *r = h->req;
    if (head_grow(p, n) < 0)
        return -1;
    h->in_value = 1;
    struct http_header *hd = &r->headers[r->n_headers - 1];
    if (!hd->value && !(hd->value = strdup("")))
        return -1;
    return append_str(&hd->value, at, n);
}

/* RFC 7230 token: Debian's http-parser is built lenient and lets spaces through. */
static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~", *s) && !isalnum((unsigned char)*s))
            return 0;
    return 1;
}

static int on_headers_complete(http_parser *p)
{
    struct http_parse *h = H(p);
    struct chatd_http *r = h->req;
    r->method = p->method;
    r->keep_alive = http_should_keep_alive(p);
    r->upgrade = p->upgrade;
    for (int i = 0; i < r->n_headers; i++) {
        if (!is_token(r->headers[i].name)) {
            h->error_status = 400;
            return -1;
        }
        if (!r->headers[i].value && !(r->headers[i].value = strdup("")))
            return -1;
    }
    if (p->content_length != ULLONG_MAX && p->content_length > (uint64_t)h->max_body) {
        h->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct http_parse *h = H(p);
    struct chatd_http *r = h->req;
    if (r->body_len + n > (size_t)h->max_body) {
        h->error_status = 413;
        return -1;
    }
    return append(&r->body, &r->body_len, &r->body_cap, at, n);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Percent-decode n bytes of src into dst (n + 1 bytes); 0 or -1 when malformed. */
static int pct_decode(const char *src, size_t n, char *dst, int plus_is_space)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '%') {
            int a, b;
            if (i + 2 >= n || (a = hexval(src[i + 1])) < 0 || (b = hexval(src[i + 2])) < 0)
                return -1;
            int v = a * 16 + b;
            if (v == 0)
                return -1;
            dst[j++] = (char)v;
            i += 2;
        } else if (plus_is_space && src[i] == '+') {
            dst[j++] = ' ';
        } else {
            dst[j++] = src[i];
        }
    }
    dst[j] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_parse *h = H(p);
    struct chatd_http *r = h->req;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!r->url || http_parser_parse_url(r->url, strlen(r->url), r->method == HTTP_CONNECT, &u)) {
        h->error_status = 400;
        return -1;
    }
    const char *path = "/";
    size_t plen = 1;
    if (u.field_set & (1 << UF_PATH)) {
        path = r->url + u.field_data[UF_PATH].off;
        plen = u.field_data[UF_PATH].len;
    }
    if (!(r->path = malloc(plen + 1)) || pct_decode(path, plen, r->path, 0) < 0) {
        h->error_status = 400;
        return -1;
    }
    if (u.field_set & (1 << UF_QUERY) &&
        !(r->query = strndup(r->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len)))
        return -1;
    if (!r->body && !(r->body = calloc(1, 1)))
        return -1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_parse_init(struct http_parse *h, int64_t max_head, int64_t max_headers, int64_t max_body)
{
    memset(h, 0, sizeof *h);
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->max_head = max_head;
    h->max_headers = max_headers;
    h->max_body = max_body;
}

size_t http_parse_feed(struct http_parse *h, const char *data, size_t len, struct chatd_http **done)
{
    *done = NULL;
    size_t n = http_parser_execute(&h->parser, &settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);
    if (err == HPE_PAUSED) {
        http_parser_pause(&h->parser, 0);
        *done = h->req;
        h->req = NULL;
        h->started = 0;
    } else if (err != HPE_OK && !h->error_status) {
        h->error_status = 400;
    }
    return n;
}

void http_parse_free(struct http_parse *h)
{
    http_request_free(h->req);
    h->req = NULL;
}

void http_request_free(struct chatd_http *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->url);
    free(r->path);
    free(r->query);
    free(r->body);
    free(r);
}

const char *http_header_get(const struct chatd_http *r, const char *name)
{
    for (int i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

const char *http_query_get(const char *query, const char *key, char *buf, size_t len)
{
    size_t klen = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = n - klen - 1;
            if (vlen + 1 > len || pct_decode(p + klen + 1, vlen, buf, 1) < 0)
                return NULL;
            return buf;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

const char *http_method_name(int method)
{
    return http_method_str((enum http_method)method);
}
