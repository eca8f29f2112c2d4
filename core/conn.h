/*
 * One client connection, from accept to close: HTTP first, WebSocket after
 * an upgrade. Owned by the server module; everything here is loop-thread only.
 */
#ifndef CHATD_CONN_H
#define CHATD_CONN_H

#include <stdint.h>
#include <event2/bufferevent.h>

enum conn_state {
    CONN_HTTP,    /* reading HTTP requests */
    CONN_WS,      /* WebSocket open */
    CONN_CLOSING, /* flushing the last bytes (and waiting for a close frame) */
    CONN_DEAD,    /* waiting to be freed at a safe point */
};

struct http_conn;
struct ws_conn;
struct session;
struct chatd_http;

struct conn {
    uint64_t id;
    struct bufferevent *bev;
    enum conn_state state;
    char peer[48];          /* client address as text */
    int64_t last_rx_ms;     /* monotonic time of the last bytes received */
    int64_t deadline_ms;    /* HTTP: the request (or handshake) must be complete by then; 0 none */
    int output_blocked;     /* HTTP: reading stopped until queued answers drain */
    int lingering;          /* HTTP: answered and shut for writing; draining input */
    double tokens;          /* WebSocket messages the client may still send now */
    int64_t tokens_ms;      /* when tokens was last refilled */
    struct conn *prev, *next; /* every connection, for sweeps and shutdown */

    struct http_conn *http; /* HTTP parser state, while CONN_HTTP */
    struct chatd_http *pending; /* the HTTP request being answered, if any */

    struct ws_conn *ws;       /* after the upgrade */
    struct session *session;  /* login session of the WebSocket */
    struct conn *s_prev, *s_next; /* WebSockets of the same login session */
    struct conn *u_prev, *u_next; /* WebSockets of the same user on this node */
    int64_t user_id;
    int64_t channel_id;           /* the active (entered) channel, or 0 */
    struct conn *c_prev, *c_next; /* WebSockets entered in the same channel */
    struct conn *f_prev, *f_next; /* WebSockets with output to flush this turn */
    int flush_queued;
    int manual_output; /* conn_manual_output: the server writes, not the bufferevent */
    int close_armed; /* conn_close_after_write set the closing timeouts */
};

/* The connection with this id, or NULL when gone (or going). */
struct conn *conn_find(uint64_t id);

/* Queue bytes for the client (copied). */
int conn_write(struct conn *c, const void *data, size_t len);
/* A WebSocket's output is written by the server itself, once per loop turn
 * for everything queued during it, rather than on the socket's writability:
 * while the kernel takes it all, that costs one write and no epoll change.
 * Only what the socket does not take waits for writability. */
/* Hand the output of a WebSocket over to the server (after the handshake). */
void conn_manual_output(struct conn *c);
/* Output was queued: write it at the end of this loop turn. */
void conn_flush_soon(struct conn *c);
/* Flush what is queued, then close the socket. */
void conn_close_after_write(struct conn *c);
/* Close now, dropping anything queued; freed at a safe point. */
void conn_abort(struct conn *c);
/* Stop or resume reading (an HTTP request is being answered). */
void conn_pause_read(struct conn *c, int pause);
/* The bytes received and not yet consumed. */
struct evbuffer *conn_input(struct conn *c);
/* Process input already buffered (after resuming a paused connection). */
void conn_process_input(struct conn *c);

/* Monotonic milliseconds, cached per loop iteration. */
int64_t conn_now_ms(void);

#endif
