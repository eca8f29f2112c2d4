#include "http.h"

#include <ctype.h>
#include <limits.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "conn.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "server.h"
#include "ws.h"

struct http_conn {
    http_parser parser;
    struct chatd_http *req; /* being parsed */
    size_t head_bytes;
    int in_value;           /* the last header callback was a value */
    int error_status;       /* a limit we stopped the parser for */
    const char *error_text; /* and what to say about it */
    int in_read;            /* inside http_conn_read: no re-trigger needed */
};

static const struct settings *cfg(void)
{
    return router_settings();
}

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

static struct http_conn *H(http_parser *p)
{
    return (struct http_conn *)p; /* parser is the first member */
}

static int head_grow(http_parser *p, size_t n)
{
    struct http_conn *h = H(p);
    h->head_bytes += n;
    if (h->head_bytes > (size_t)cfg()->http_max_head) {
        h->error_status = 431;
        h->error_text = "request head too large (http.max_head_size)";
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *h = H(p);
    struct conn *c = p->data;
    h->head_bytes = 0;
    h->in_value = 0;
    if (!h->req && !(h->req = calloc(1, sizeof *h->req)))
        return -1;
    h->req->conn_id = c->id;
    h->req->started_ms = conn_now_ms();
    /* The whole request, not each byte, must arrive within the timeout. */
    c->deadline_ms = h->req->started_ms + cfg()->ws_handshake_timeout * 1000;
    memcpy(h->req->peer, c->peer, sizeof h->req->peer);
    struct timeval tv = {cfg()->ws_handshake_timeout, 0};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
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
    struct http_conn *h = H(p);
    struct chatd_http *r = h->req;
    if (head_grow(p, n + 4) < 0)
        return -1;
    if (h->in_value || r->n_headers == 0) {
        if (r->n_headers >= cfg()->http_max_headers) {
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
    struct http_conn *h = H(p);
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
    struct http_conn *h = H(p);
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
    if (p->content_length != ULLONG_MAX && p->content_length > (uint64_t)cfg()->http_max_body) {
        h->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct http_conn *h = H(p);
    struct chatd_http *r = h->req;
    if (r->body_len + n > (size_t)cfg()->http_max_body) {
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
    struct http_conn *h = H(p);
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

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

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

void http_conn_free(struct conn *c)
{
    if (!c->http)
        return;
    http_request_free(c->http->req);
    free(c->http);
    c->http = NULL;
}

void http_conn_orphan(struct conn *c)
{
    if (c->pending) {
        c->pending->conn_id = 0; /* the reply will find no connection */
        c->pending = NULL;
    }
}

/* Answer a request the parser rejected, then close: the stream is unusable. */
static void reject(struct conn *c, int status)
{
    struct http_conn *h = c->http;
    struct chatd_http *r = h->req;
    h->req = NULL;
    if (!r && !(r = calloc(1, sizeof *r))) {
        conn_abort(c);
        return;
    }
    r->conn_id = c->id;
    r->keep_alive = 0;
    c->pending = r;
    metrics_count("http_rejected", 1);
    if (status == 431)
        http_respond_error(r, CHATD_ERR_LIMIT_EXCEEDED, 431, h->error_text);
    else if (status == 413)
        http_respond_error(r, CHATD_ERR_LIMIT_EXCEEDED, 413, "request body too large");
    else
        http_respond_error(r, CHATD_ERR_BAD_REQUEST, 400, "malformed HTTP request");
    conn_close_after_write(c);
}

void http_conn_read(struct conn *c)
{
    struct evbuffer *in = conn_input(c);
    if (!c->http) {
        if (!(c->http = calloc(1, sizeof *c->http))) {
            conn_abort(c);
            return;
        }
        http_parser_init(&c->http->parser, HTTP_REQUEST);
        c->http->parser.data = c;
    }
    struct http_conn *h = c->http;
    h->in_read = 1;
    while (c->state == CONN_HTTP && !c->pending && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = http_parser_execute(&h->parser, &parser_settings, v.iov_base, v.iov_len);
        enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);
        if (err == HPE_PAUSED) {
            evbuffer_drain(in, n);
            http_parser_pause(&h->parser, 0);
            struct chatd_http *r = h->req;
            h->req = NULL;
            c->pending = r;
            conn_pause_read(c, 1);
            metrics_count("http_requests", 1);
            router_handle(c, r);
            continue;
        }
        if (err != HPE_OK) {
            evbuffer_drain(in, evbuffer_get_length(in));
            reject(c, h->error_status ? h->error_status : 400);
            break;
        }
        evbuffer_drain(in, n);
    }
    h->in_read = 0;
    if (c->state == CONN_WS) {
        http_conn_free(c); /* an open WebSocket keeps no HTTP state */
        if (evbuffer_get_length(in) > 0)
            ws_conn_read(c); /* frames sent right behind the handshake */
    }
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

static const char *reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

void http_respond(struct chatd_http *req, int status, const char *content_type, const void *body,
                  size_t len, const char *extra_headers)
{
    struct conn *c = req->conn_id ? conn_find(req->conn_id) : NULL;
    if (!c || c->pending != req) {
        http_request_free(req); /* the client has gone: the reply goes nowhere */
        return;
    }
    int keep = req->keep_alive && c->state == CONN_HTTP && !server_draining();
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, reason(status));
    if (status != 204 && status != 101)
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
    if (content_type && len)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
    evbuffer_add_printf(out, "Cache-Control: no-store\r\nConnection: %s\r\n%s\r\n",
                        keep ? "keep-alive" : "close", extra_headers ? extra_headers : "");
    if (len && req->method != HTTP_HEAD) /* HEAD: the headers of GET, no body (RFC 9110 9.3.2) */
        evbuffer_add(out, body, len);
    if (req->started_ms)
        metrics_observe_us("http_request", (uint64_t)(conn_now_ms() - req->started_ms) * 1000);
    c->pending = NULL;
    http_request_free(req);
    if (!keep) {
        conn_close_after_write(c);
        return;
    }
    struct timeval tv = {cfg()->http_keepalive_timeout, 0};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    c->deadline_ms = 0; /* idle between requests: the keep-alive timeout applies */
    if (evbuffer_get_length(out) > (size_t)cfg()->ws_max_outbuf) {
        /* A pipelining client that does not read its answers: stop reading
         * its requests until they drain (on_write resumes). */
        c->output_blocked = 1;
        return;
    }
    conn_pause_read(c, 0);
    if (c->http && !c->http->in_read && evbuffer_get_length(conn_input(c)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void http_respond_json(struct chatd_http *req, int status, json_t *body, const char *extra)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (body && !text) {
        http_respond(req, 500, NULL, NULL, 0, NULL);
        return;
    }
    http_respond(req, status, "application/json", text, text ? strlen(text) : 0, extra);
    free(text);
}

void http_respond_error(struct chatd_http *req, chatd_error_code code, int status,
                        const char *msg)
{
    char text[64];
    if (code == CHATD_ERR_INTERNAL)
        msg = error_internal_text(msg, req->path, text, sizeof text);
    http_respond_json(req, status ? status : error_http_status(code),
                      json_pack("{s:s, s:s}", "error", error_code_name(code), "message",
                                msg ? msg : error_code_name(code)),
                      NULL);
}
