/*
 * Client connections, from accept to close, knowing nothing of the protocols
 * above them: the layer that speaks on a connection installs its ops (http at
 * accept, ws at the upgrade) and its own state. A connection is freed only at
 * a safe point, the loop turn after it died, never inside a callback that may
 * still touch it. Loop thread only.
 */
#ifndef CHATD_CONN_H
#define CHATD_CONN_H

#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct evbuffer;
struct event_base;

enum conn_state {
    CONN_OPEN,    /* reading and writing */
    CONN_CLOSING, /* flushing the last bytes (and maybe waiting for the peer's last word) */
    CONN_DEAD,    /* closed; freed at the next loop turn */
};

/* Which listener accepted a connection. */
enum conn_listener {
    CONN_LISTENER_MAIN,  /* server.listen (and connections handed in, as tests do) */
    CONN_LISTENER_ADMIN, /* admin.listen: the admin API only */
};
#define CONN_LISTENERS 2

struct conn;

/* What the protocol on a connection does with it. Every callback is optional
 * and runs on the loop thread with the connection borrowed. */
struct conn_ops {
    /* Bytes arrived; read them from conn_input(c). */
    void (*input)(struct conn *c);
    /* Everything queued was written (an open connection). */
    void (*drained)(struct conn *c);
    /* Closing: whether to keep reading for the peer's last word (a WebSocket
     * close frame) before the socket is closed. */
    int (*awaits_peer)(struct conn *c);
    /* The peer shut its side: 1 to go on answering (then close), 0 to close now. */
    int (*half_closed)(struct conn *c);
    /* Once per sweep period (timeouts, pings). */
    void (*tick)(struct conn *c, int64_t now_ms);
    /* The server is shutting down: close the way the protocol does. */
    void (*drain)(struct conn *c);
    /* The connection died: drop references to it now. No callback into the
     * layers above may run from here (they hear later, see ws.h). */
    void (*dead)(struct conn *c);
    /* The loop turn after it died: free the protocol's state. */
    void (*release)(struct conn *c);
};

struct conn {
    uint64_t id;
    struct bufferevent *bev;
    enum conn_state state;
    char peer[48];               /* client address as text */
    enum conn_listener listener; /* which listener accepted it */
    int64_t last_rx_ms;          /* clock_now_ms() of the last bytes received */
    const struct conn_ops *ops;
    void *proto; /* the protocol layer's state */
    int linger;  /* closing: shut our side and read until the peer's EOF (HTTP) */
    /* the net layer's own below */
    struct conn *prev, *next;     /* every connection */
    struct conn *f_prev, *f_next; /* connections with output to write this turn */
    int flush_queued;
    int manual_output;       /* conn_manual_output: the loop writes, not the bufferevent */
    int close_armed;         /* conn_close_after_write set the closing timeouts */
    int lingering;           /* shut for writing; draining input until EOF */
    int tls;                 /* a TLS bufferevent (tls_accept's): only it writes to the socket */
    int handshaking;         /* TLS: the handshake has not finished; ops hear nothing yet */
    const char *tls_failure; /* why a handshake ended early, for the log (NULL: OpenSSL's) */
};

struct conn_limits {
    int64_t max_connections;
    int64_t max_per_addr;
    int64_t sweep_ms; /* how often tick runs */
};

/* Start the connection table on base. 0 or CHATD_ENOMEM. */
/* New limits (a reload): for connections accepted from now on. */
void conn_set_limits(const struct conn_limits *limits);
int conn_init(struct event_base *base, const struct conn_limits *limits);
/* Close and free every connection (after the loop stopped). */
void conn_free_all(void);

/* Take a connection in (the listener's accepts, and tests' bufferevent pairs)
 * from listener: the new connection, or NULL when refused (limits) or out of
 * memory; either way bev is taken (freed on refusal). peer is copied. ops and
 * proto are installed as with conn_set_ops. A TLS bufferevent (tls_accept)
 * handshakes first: its ops see the bytes that come after, and a handshake
 * that fails is counted (chatd_tls_handshake_failures_total) and closed. */
struct conn *conn_adopt(struct bufferevent *bev, const char *peer, enum conn_listener listener,
                        const struct conn_ops *ops, void *proto);
/* Install a protocol (the old one's state is the caller's to free). */
void conn_set_ops(struct conn *c, const struct conn_ops *ops, void *proto);

/* The connection with this id, or NULL when gone (or going). */
struct conn *conn_find(uint64_t id);
/* The bytes received and not yet consumed. */
struct evbuffer *conn_input(struct conn *c);
/* Input already buffered is handed to ops->input (after a pause, or after
 * the protocol changed with bytes left over). */
void conn_process_input(struct conn *c);
/* Stop or resume reading. */
void conn_pause_read(struct conn *c, int pause);

/*
 * Output written by the loop itself, once per turn for everything queued
 * during it (one write and no epoll change while the kernel takes it all);
 * only what the socket does not take waits for writability. Without it the
 * bufferevent writes on writability, as it always does for TLS (OpenSSL
 * makes the records) and for bufferevent pairs.
 */
void conn_manual_output(struct conn *c);
/* Output was queued: write it at the end of this loop turn. */
void conn_flush_soon(struct conn *c);
/* Flush what is queued, then close (bounded in time; see conn_ops.awaits_peer
 * and conn.linger). Idempotent: call again when the protocol is ready. */
void conn_close_after_write(struct conn *c);
/* Close now, dropping anything queued. */
void conn_abort(struct conn *c);

/* Ask every connection to close (ops->drain) and refuse new ones. */
void conn_drain_all(void);
/* Whether shutdown started (no more keep-alive). */
int conn_draining(void);
/* Connections open (or closing). */
long conn_count(void);

#endif
