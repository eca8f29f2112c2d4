/*
 * HTTP/1.1 on a connection: requests parsed by libhttp-parser with the head
 * and body limits applied, and responses written with keep-alive. The
 * request object (struct chatd_http) outlives its connection when a handler
 * answers late. Loop thread only.
 */
#ifndef CHATD_HTTP_H
#define CHATD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "chatd/plugin.h"

struct conn;
struct session;

struct http_header {
    char *name;
    char *value;
};

struct chatd_http {
    uint64_t conn_id;
    int method;                 /* enum http_method */
    char *url;                  /* as received */
    char *path;                 /* decoded path, no query */
    char *query;                /* raw query string or NULL */
    struct http_header *headers; /* n_headers of them, at most http.max_headers */
    int n_headers, cap_headers;
    char *body;                 /* NUL-terminated */
    size_t body_len, body_cap;
    int keep_alive;
    int upgrade;
    char peer[48];
    char session_key[65];       /* authenticated routes: the session's key */
    int route;                  /* the route matched, while its session is looked up */
    int64_t user_id;
    int64_t started_ms;
};

/* Parse what is buffered on c; hands complete requests to the router. */
void http_conn_read(struct conn *c);
/* Free c's parser state and any request it still owns. */
void http_conn_free(struct conn *c);
/* The connection is going away: a pending request becomes an orphan whose
 * reply will go nowhere. */
void http_conn_orphan(struct conn *c);

/* Header value by case-insensitive name, or NULL. */
const char *http_header_get(const struct chatd_http *r, const char *name);
/* Value of key in an a=b&c=d query string, percent-decoded into buf; NULL if
 * absent, malformed, or if its encoded length does not fit in len. */
const char *http_query_get(const char *query, const char *key, char *buf, size_t len);
/* Method name ("GET"). */
const char *http_method_name(int method);

/*
 * Send a response to req and complete it. body may be NULL; content_type
 * borrowed; extra_headers borrowed ("Name: v\r\n" lines) or NULL. Frees req.
 */
void http_respond(struct chatd_http *req, int status, const char *content_type,
                  const void *body, size_t len, const char *extra_headers);
/* Respond with a JSON body (taken) or none. */
void http_respond_json(struct chatd_http *req, int status, json_t *body, const char *extra);
/* Respond {"error": code, "message": msg} with status (0: the one of code);
 * an INTERNAL error's message is replaced by a logged reference. */
void http_respond_error(struct chatd_http *req, chatd_error_code code, int status,
                        const char *msg);
/* Free a request that will not be answered. */
void http_request_free(struct chatd_http *req);

#endif
