/*
 * HTTP/1.1 on a connection: requests parsed with the head and body limits
 * applied, handed whole to the callback given at init, and answered with
 * keep-alive (and pipelining). The request object (struct chatd_http)
 * outlives its connection when a handler answers late: the answer then goes
 * nowhere. Loop thread only.
 */
#ifndef CHATD_HTTP_H
#define CHATD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "chatd/plugin.h"
#include "conn.h"
#include "request.h"

struct bufferevent;

struct http_limits {
    int64_t max_head;          /* bytes of request line and headers (431) */
    int64_t max_headers;       /* header lines (431) */
    int64_t max_body;          /* bytes of body (413) */
    int64_t request_timeout;   /* seconds for a whole request to arrive */
    int64_t keepalive_timeout; /* seconds idle between requests */
    int64_t max_outbuf;        /* bytes of unread answers before reading pauses */
};

/* A complete request: the callback (or whoever it hands req to) answers it
 * exactly once with http_respond*() or http_switch_protocols(). */
typedef void (*http_request_fn)(struct chatd_http *req);

/* Limits (copied) and the callback, before the first connection. */
void http_init(const struct http_limits *limits, http_request_fn on_request);
/* A new connection (bev taken) accepted by listener: it speaks HTTP from now
 * on. 0, or CHATD_ELIMIT / CHATD_ENOMEM when refused (bev freed). */
int http_accept(struct bufferevent *bev, const char *peer, enum conn_listener listener);

/*
 * Send a response to req and complete it. body may be NULL; content_type
 * borrowed; extra_headers borrowed ("Name: v\r\n" lines) or NULL. To HEAD,
 * the headers only. Frees req.
 */
void http_respond(struct chatd_http *req, int status, const char *content_type, const void *body,
                  size_t len, const char *extra_headers);
/* Respond with a JSON body (taken) or none. Frees req. */
void http_respond_json(struct chatd_http *req, int status, json_t *body, const char *extra);
/* Respond {"error": code, "message": msg} with status (0: the one of code);
 * an INTERNAL error's message is replaced by a logged reference. Frees req. */
void http_respond_error(struct chatd_http *req, chatd_error_code code, int status, const char *msg);
/* Answer 101 with extra_headers (borrowed) and give the connection up to
 * another protocol: returns it (its HTTP state gone, reading paused; install
 * the new protocol with conn_set_ops), or NULL when the client has gone.
 * Frees req. */
struct conn *http_switch_protocols(struct chatd_http *req, const char *extra_headers);
/* Whether req (not dereferenced: it may have been answered and freed) is
 * still the unanswered request of connection conn_id. */
int http_unanswered(uint64_t conn_id, const struct chatd_http *req);

#endif
