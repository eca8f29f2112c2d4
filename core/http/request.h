/*
 * HTTP requests: the request object (struct chatd_http) with its accessors,
 * and parsing requests out of bytes with the size limits applied (for the
 * connection protocol, http.c). Pure; loop thread by use.
 */
#ifndef CHATD_HTTP_REQUEST_H
#define CHATD_HTTP_REQUEST_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#include "chatd/plugin.h"

#define SESSION_KEY_LEN 64 /* a session's key: hex of its token's SHA-256 */

struct http_header {
    char *name;
    char *value;
};

struct chatd_http {
    uint64_t conn_id;            /* 0 once the connection is gone */
    int method;                  /* enum http_method */
    char *url;                   /* as received */
    char *path;                  /* decoded path, no query */
    char *query;                 /* raw query string or NULL */
    struct http_header *headers; /* n_headers of them, at most http.max_headers */
    int n_headers, cap_headers;
    char *body; /* NUL-terminated */
    size_t body_len, body_cap;
    int keep_alive;
    int upgrade;
    char peer[48]; /* client address (X-Forwarded-For applied by the router) */
    int listener;  /* enum conn_listener of the connection: the routes it may reach */
    char session_key[SESSION_KEY_LEN + 1]; /* authenticated routes: the session's key */
    int route;                             /* the route matched, while its session is looked up */
    int64_t user_id;                       /* authenticated routes: the session's user */
    int64_t started_ms;
};

/* Free a request (NULL is fine). */
void http_request_free(struct chatd_http *req);
/* Header value by case-insensitive name, or NULL (borrowed from r). */
const char *http_header_get(const struct chatd_http *r, const char *name);
/* Value of key in an a=b&c=d query string, percent-decoded into buf; NULL if
 * absent, malformed, or if its encoded length does not fit in len. */
const char *http_query_get(const char *query, const char *key, char *buf, size_t len);
/* Method name ("GET"), or NULL. */
const char *http_method_name(int method);

struct http_parse {
    http_parser parser;                      /* first: the callbacks find the rest from it */
    int64_t max_head, max_headers, max_body; /* the limits (431, 431, 413) */
    struct chatd_http *req;                  /* being parsed */
    size_t head_bytes;
    int in_value;           /* the last header callback was a value */
    int started;            /* a request's first byte came */
    int error_status;       /* the parser was stopped: answer this and close */
    const char *error_text; /* and what to say about it (NULL: the status's own) */
};

/* Start parsing requests with these limits. */
void http_parse_init(struct http_parse *h, int64_t max_head, int64_t max_headers, int64_t max_body);
/* Feed len bytes; returns how many were used. *done is a complete request
 * (the caller owns it; feed the rest after answering it) or NULL; on a
 * malformed or oversized request h->error_status is set. */
size_t http_parse_feed(struct http_parse *h, const char *data, size_t len,
                       struct chatd_http **done);
/* Free the request being parsed, if any. */
void http_parse_free(struct http_parse *h);

#endif
