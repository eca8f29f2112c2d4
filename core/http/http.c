/* The HTTP protocol on a connection: reading requests, writing answers. */
#include "http.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conn.h"
#include "errors.h"
#include "metrics.h"
#include "request.h"

/* An HTTP connection's state (conn->proto). */
struct http_conn {
    struct http_parse parse;
    struct chatd_http *pending; /* the request being answered: reading waits */
    int64_t deadline_ms;        /* the request being received must be whole by then; 0 none */
    int output_blocked;         /* reading stopped until queued answers drain */
    int in_read;                /* inside http_input: it goes on with the buffered bytes */
    int switched;               /* given up to another protocol while in_read */
};

static struct {
    struct http_limits lim;
    http_request_fn on_request;
    int64_t *errors[ERROR_CELLS]; /* chatd_http_errors_total{code} */
} hs;

static const struct conn_ops http_ops;

void http_init(const struct http_limits *limits, http_request_fn on_request)
{
    hs.lim = *limits;
    hs.on_request = on_request;
    error_count_init(hs.errors, "http_errors");
}

static struct http_conn *H(struct conn *c)
{
    return c->ops == &http_ops ? c->proto : NULL;
}

static void set_read_timeout(struct conn *c, int64_t seconds)
{
    struct timeval tv = {seconds, 0};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
}

int http_accept(struct bufferevent *bev, const char *peer)
{
    struct http_conn *h = calloc(1, sizeof *h);
    if (!h) {
        bufferevent_free(bev);
        return CHATD_ENOMEM;
    }
    http_parse_init(&h->parse, hs.lim.max_head, hs.lim.max_headers, hs.lim.max_body);
    struct conn *c = conn_adopt(bev, peer, &http_ops, h);
    if (!c) {
        free(h);
        return CHATD_ELIMIT;
    }
    /* The first request, like every later one, must come whole in time. */
    h->deadline_ms = c->last_rx_ms + hs.lim.request_timeout * 1000;
    set_read_timeout(c, hs.lim.request_timeout);
    return 0;
}

/* Answer a request the parser rejected, then close: the stream is unusable. */
static void reject(struct conn *c, struct http_conn *h)
{
    struct chatd_http *r = h->parse.req;
    int status = h->parse.error_status;
    const char *text = h->parse.error_text;
    h->parse.req = NULL;
    if (!r && !(r = calloc(1, sizeof *r))) {
        conn_abort(c);
        return;
    }
    r->conn_id = c->id;
    r->keep_alive = 0;
    h->pending = r;
    metrics_count("http_rejected", 1);
    if (status == 431 || status == 413)
        http_respond_error(r, CHATD_ERR_LIMIT_EXCEEDED, status,
                           text            ? text
                           : status == 413 ? "request body too large"
                                           : "request head too large");
    else
        http_respond_error(r, CHATD_ERR_BAD_REQUEST, 400, "malformed HTTP request");
}

static void http_input(struct conn *c)
{
    struct http_conn *h = c->proto;
    struct evbuffer *in = conn_input(c);
    if (c->state != CONN_OPEN) { /* answering its last request: the rest is dropped */
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    h->in_read = 1;
    /* An answer made at once may leave output over max_outbuf: the requests
     * buffered behind it wait for it to drain too (http_drained). */
    while (c->state == CONN_OPEN && !h->pending && !h->switched && !h->output_blocked &&
           evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        int was_started = h->parse.started;
        struct chatd_http *r;
        size_t n = http_parse_feed(&h->parse, v.iov_base, v.iov_len, &r);
        if (!was_started && (h->parse.started || r)) {
            /* The whole request, not each byte, must arrive within the timeout. */
            h->deadline_ms = clock_now_ms() + hs.lim.request_timeout * 1000;
            set_read_timeout(c, hs.lim.request_timeout);
        }
        if (h->parse.error_status) {
            evbuffer_drain(in, evbuffer_get_length(in));
            reject(c, h);
            break;
        }
        evbuffer_drain(in, n);
        if (r) {
            r->conn_id = c->id;
            r->started_ms = clock_now_ms();
            memcpy(r->peer, c->peer, sizeof r->peer);
            h->pending = r;
            conn_pause_read(c, 1);
            METRICS_ADD("http_requests", 1);
            hs.on_request(r);
        }
    }
    h->in_read = 0;
    if (h->switched)
        free(h); /* given up to another protocol, which reads what came behind */
}

/* A client that read its answers: take its next requests. */
static void http_drained(struct conn *c)
{
    struct http_conn *h = c->proto;
    if (!h->output_blocked)
        return;
    h->output_blocked = 0;
    conn_pause_read(c, 0);
    conn_process_input(c);
}

/* The client half-closed after its request: answer (or finish writing the
 * answer), then close. */
static int http_half_closed(struct conn *c)
{
    struct http_conn *h = c->proto;
    return h->pending != NULL || evbuffer_get_length(bufferevent_get_output(c->bev)) != 0;
}

/* A request trickled in slower than the timeout allows. */
static void http_tick(struct conn *c, int64_t now_ms)
{
    struct http_conn *h = c->proto;
    if (c->state == CONN_OPEN && h->deadline_ms && now_ms > h->deadline_ms && !h->pending) {
        metrics_count("http_request_timeouts", 1);
        conn_abort(c);
    }
}

static void http_drain(struct conn *c)
{
    struct http_conn *h = c->proto;
    if (c->state == CONN_OPEN && !h->pending)
        conn_abort(c); /* idle: nothing to finish */
}

/* A pending request becomes an orphan whose reply will go nowhere. */
static void http_dead(struct conn *c)
{
    struct http_conn *h = c->proto;
    if (h && h->pending) {
        h->pending->conn_id = 0;
        h->pending = NULL;
    }
}

static void http_release(struct conn *c)
{
    struct http_conn *h = c->proto;
    if (!h)
        return;
    http_parse_free(&h->parse);
    free(h);
    c->proto = NULL;
}

static const struct conn_ops http_ops = {
    .input = http_input,
    .drained = http_drained,
    .half_closed = http_half_closed,
    .tick = http_tick,
    .drain = http_drain,
    .dead = http_dead,
    .release = http_release,
};

static const char *reason(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 304:
        return "Not Modified";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* The connection still waiting for this answer, or NULL (gone, or not its turn). */
static struct conn *answering(struct chatd_http *req)
{
    struct conn *c = req->conn_id ? conn_find(req->conn_id) : NULL;
    struct http_conn *h = c ? H(c) : NULL;
    return h && h->pending == req ? c : NULL;
}

int http_unanswered(uint64_t conn_id, const struct chatd_http *req)
{
    struct conn *c = conn_find(conn_id);
    struct http_conn *h = c ? H(c) : NULL;
    return h && h->pending == req;
}

void http_respond(struct chatd_http *req, int status, const char *content_type, const void *body,
                  size_t len, const char *extra_headers)
{
    struct conn *c = answering(req);
    if (!c) {
        http_request_free(req); /* the client has gone: the reply goes nowhere */
        return;
    }
    struct http_conn *h = c->proto;
    int keep = req->keep_alive && c->state == CONN_OPEN && !conn_draining();
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, reason(status));
    if (status != 204 && status != 304) /* neither has a body (RFC 9110 8.6) */
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
    if (content_type && len)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
    /* Nothing is cached unless the answer says how (static files do). */
    if (!extra_headers || !strstr(extra_headers, "Cache-Control:"))
        evbuffer_add_printf(out, "Cache-Control: no-store\r\n");
    evbuffer_add_printf(out, "Connection: %s\r\n%s\r\n", keep ? "keep-alive" : "close",
                        extra_headers ? extra_headers : "");
    if (len && status != 304 &&
        req->method != HTTP_HEAD) /* HEAD: the headers of GET, no body (RFC 9110 9.3.2) */
        evbuffer_add(out, body, len);
    if (req->started_ms)
        metrics_observe_us("http_request", (uint64_t)(clock_now_ms() - req->started_ms) * 1000);
    h->pending = NULL;
    http_request_free(req);
    if (!keep) {
        c->linger = 1;
        conn_close_after_write(c);
        return;
    }
    set_read_timeout(c, hs.lim.keepalive_timeout);
    h->deadline_ms = 0; /* idle between requests: the keep-alive timeout applies */
    if (evbuffer_get_length(out) > (size_t)hs.lim.max_outbuf) {
        /* A pipelining client that does not read its answers: stop reading
         * its requests until they drain (http_drained resumes). */
        h->output_blocked = 1;
        return;
    }
    conn_pause_read(c, 0);
    if (!h->in_read && evbuffer_get_length(conn_input(c)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

struct conn *http_switch_protocols(struct chatd_http *req, const char *extra_headers)
{
    struct conn *c = answering(req);
    if (!c) {
        http_request_free(req);
        return NULL;
    }
    struct http_conn *h = c->proto;
    evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 101 %s\r\n%s\r\n", reason(101),
                        extra_headers ? extra_headers : "");
    h->pending = NULL;
    http_request_free(req);
    http_parse_free(&h->parse);
    conn_set_ops(c, NULL, NULL);
    if (h->in_read)
        h->switched = 1; /* http_input frees it when it unwinds */
    else
        free(h);
    return c;
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

void http_respond_error(struct chatd_http *req, chatd_error_code code, int status, const char *msg)
{
    error_count(hs.errors, "http_errors", code);
    char text[64];
    if (code == CHATD_ERR_INTERNAL)
        msg = error_internal_text(msg, req->path, req->conn_id,
                                  http_header_get(req, "X-Request-Id"), text, sizeof text);
    http_respond_json(req, status ? status : error_http_status(code),
                      json_pack("{s:s, s:s}", "error", error_code_name(code), "message",
                                msg ? msg : error_code_name(code)),
                      NULL);
}
