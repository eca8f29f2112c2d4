/* A validating walk over JSON text that records what jansson could not hold. */
#include "json_scan.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048 /* as jansson's parser */
#define KEY_MAX 64

struct scan {
    const char *p, *start, *end;
    struct json_fault *f;
    const char *syntax; /* set at the first syntax error */
    const char *fault;  /* the first value jansson cannot hold */
    char path[sizeof((struct json_fault *)0)->where];
    size_t path_len;
    int depth;
};

static void ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int syntax(struct scan *s, const char *why)
{
    if (!s->syntax) {
        s->syntax = why;
        s->f->offset = (size_t)(s->p - s->start);
    }
    return -1;
}

/* Remember the first value jansson refuses, at the current path. */
static void value_fault(struct scan *s, const char *why, const char *at)
{
    if (s->fault)
        return;
    s->fault = why;
    s->f->offset = (size_t)(at - s->start);
    memcpy(s->f->where, s->path, s->path_len);
    s->f->where[s->path_len] = '\0';
}

static int hex4(const char *p, const char *end, unsigned *out)
{
    unsigned v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Append UTF-8 of cp to out (cap bytes, NUL kept room for); *n grows, or *over is set. */
static void put_cp(char *out, size_t cap, size_t *n, int *over, unsigned cp)
{
    char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        b[0] = (char)(0xf0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    if (!out)
        return;
    if (*n + k >= cap) {
        *over = 1;
        return;
    }
    memcpy(out + *n, b, k);
    *n += k;
}

/*
 * A string at s->p (its opening quote). When out is given, its decoded text
 * goes there (NUL-terminated; *over set when it does not fit in cap). *bad
 * tells whether it holds what jansson refuses. -1 on a syntax error.
 */
static int scan_string(struct scan *s, char *out, size_t cap, int *over, int *bad)
{
    size_t n = 0;
    const char *at = s->p;
    *over = 0;
    *bad = 0;
    s->p++; /* the quote */
    while (s->p < s->end && *s->p != '"') {
        unsigned char c = (unsigned char)*s->p;
        if (c < 0x20)
            return syntax(s, "a control character in a string must be escaped");
        if (c != '\\') {
            if (out && n + 1 < cap)
                out[n++] = (char)c;
            else if (out)
                *over = 1;
            s->p++;
            continue;
        }
        if (s->end - s->p < 2)
            return syntax(s, "unterminated string");
        char e = s->p[1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char to[] = "\"\\/\b\f\n\r\t";
            put_cp(out, cap, &n, over, (unsigned char)to[simple - "\"\\/bfnrt"]);
            s->p += 2;
            continue;
        }
        unsigned cp;
        if (e != 'u' || hex4(s->p + 2, s->end, &cp) < 0)
            return syntax(s, "invalid escape in a string");
        s->p += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            unsigned lo;
            if (s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u' &&
                hex4(s->p + 2, s->end, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                s->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else {
                value_fault(s,
                            "a string holds a lone surrogate (\\ud800-\\udbff without its pair),"
                            " which is not a Unicode character",
                            at);
                *bad = 1;
                continue;
            }
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            value_fault(s,
                        "a string holds a lone surrogate (\\udc00-\\udfff without its pair),"
                        " which is not a Unicode character",
                        at);
            *bad = 1;
            continue;
        } else if (cp == 0) {
            value_fault(s, "a string holds U+0000, which chatd does not take", at);
            *bad = 1;
            continue;
        }
        put_cp(out, cap, &n, over, cp);
    }
    if (s->p >= s->end)
        return syntax(s, "unterminated string");
    s->p++;
    if (out)
        out[n] = '\0';
    return 0;
}

static int is_digit(const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static int scan_number(struct scan *s)
{
    const char *at = s->p;
    int real = 0;
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (!is_digit(s->p, s->end))
        return syntax(s, "invalid number");
    if (*s->p == '0')
        s->p++;
    else
        while (is_digit(s->p, s->end))
            s->p++;
    if (s->p < s->end && *s->p == '.') {
        real = 1;
        s->p++;
        if (!is_digit(s->p, s->end))
            return syntax(s, "invalid number");
        while (is_digit(s->p, s->end))
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        real = 1;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!is_digit(s->p, s->end))
            return syntax(s, "invalid number");
        while (is_digit(s->p, s->end))
            s->p++;
    }
    size_t len = (size_t)(s->p - at);
    char small[64], *copy = len < sizeof small ? small : malloc(len + 1);
    if (!copy)
        return 0; /* cannot tell; the answer still says malformed JSON */
    memcpy(copy, at, len);
    copy[len] = '\0';
    errno = 0;
    if (real) {
        double d = strtod(copy, NULL);
        if (errno == ERANGE && (d > 1.0 || d < -1.0))
            value_fault(s, "a number is too large for a 64-bit float", at);
    } else {
        (void)strtoll(copy, NULL, 10);
        if (errno == ERANGE)
            value_fault(s, "an integer does not fit in 64 bits", at);
    }
    if (copy != small)
        free(copy);
    return 0;
}

static int scan_literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return syntax(s, "invalid JSON value");
    s->p += n;
    return 0;
}

static int scan_value(struct scan *s);

/* Path of the value being scanned: "a.b[2]"; cut short rather than overflow. */
static size_t path_push(struct scan *s, const char *fmt, const char *key, size_t index)
{
    size_t saved = s->path_len, room = sizeof s->path - s->path_len;
    int n = key ? snprintf(s->path + s->path_len, room, fmt, s->path_len ? "." : "", key)
                : snprintf(s->path + s->path_len, room, fmt, index);
    s->path_len = n < 0               ? s->path_len
                  : (size_t)n >= room ? sizeof s->path - 1
                                      : s->path_len + (size_t)n;
    return saved;
}

/* After a member of an object or array: restore the path to saved, then 1
 * when a ',' announces another member, 0 at the closing character, -1 else. */
static int next_member(struct scan *s, size_t saved, char close)
{
    s->path_len = saved;
    s->path[saved] = '\0';
    ws(s);
    if (s->p < s->end && *s->p == ',') {
        s->p++;
        ws(s);
        return 1;
    }
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    return syntax(s, close == '}' ? "',' or '}' expected in an object"
                                  : "',' or ']' expected in an array");
}

static int scan_object(struct scan *s)
{
    int top = s->depth == 1;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        char key[KEY_MAX + 1];
        int over, bad;
        if (s->p >= s->end || *s->p != '"')
            return syntax(s, "an object key must be a string");
        if (scan_string(s, key, sizeof key, &over, &bad) < 0)
            return -1;
        ws(s);
        if (s->p >= s->end || *s->p != ':')
            return syntax(s, "':' expected after an object key");
        s->p++;
        ws(s);
        size_t saved = path_push(s, "%s%s", key, 0);
        int want_type = top && !over && !bad && strcmp(key, "type") == 0;
        int want_rid = top && !over && !bad && strcmp(key, "requestId") == 0;
        if ((want_type || want_rid) && s->p < s->end && *s->p == '"') {
            char v[JSON_SCAN_TYPE_MAX + 1];
            int v_over, v_bad;
            if (scan_string(s, v, sizeof v, &v_over, &v_bad) < 0)
                return -1;
            if (!v_over && !v_bad) {
                if (want_type) {
                    memcpy(s->f->type, v, sizeof v);
                    s->f->has_type = 1;
                } else {
                    memcpy(s->f->request_id, v, sizeof v);
                    s->f->has_request_id = 1;
                }
            }
        } else if (scan_value(s) < 0) {
            return -1;
        }
        int next = next_member(s, saved, '}');
        if (next <= 0)
            return next;
    }
}

static int scan_array(struct scan *s)
{
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (size_t i = 0;; i++) {
        size_t saved = path_push(s, "[%zu]", NULL, i);
        if (scan_value(s) < 0)
            return -1;
        int next = next_member(s, saved, ']');
        if (next <= 0)
            return next;
    }
}

static int scan_value(struct scan *s)
{
    if (s->p >= s->end)
        return syntax(s, "a value is missing");
    char c = *s->p;
    int over, bad, rc;
    switch (c) {
    case '{':
    case '[':
        if (s->depth >= MAX_DEPTH)
            return syntax(s, "nested too deeply");
        s->depth++;
        rc = c == '{' ? scan_object(s) : scan_array(s);
        s->depth--;
        return rc;
    case '"':
        return scan_string(s, NULL, 0, &over, &bad);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    default:
        return scan_number(s);
    }
}

void json_scan_fault(const char *text, size_t len, struct json_fault *out)
{
    memset(out, 0, sizeof *out);
    if (!text) /* an empty message */
        text = "", len = 0;
    struct scan s = {.p = text, .start = text, .end = text + len, .f = out};
    ws(&s);
    if (scan_value(&s) == 0) {
        ws(&s);
        if (s.p != s.end)
            syntax(&s, "text after the JSON value");
    }
    if (s.syntax) {
        out->is_json = 0;
        out->why = s.syntax;
        out->where[0] = '\0';
        return;
    }
    out->is_json = 1;
    out->why = s.fault; /* NULL: nothing here jansson should refuse */
}
