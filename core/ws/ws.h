/*
 * The WebSocket protocol (RFC 6455) on a connection: wslay framing, server
 * pings and the idle timeout, close codes, and shared outgoing frames
 * (encoded once, copied or referenced into every recipient's output). What
 * happens on a WebSocket is told through the events given at init; a close
 * is told on a later loop turn, never inside the caller's loop. Loop thread.
 */
#ifndef CHATD_WS_H
#define CHATD_WS_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct event_base;

/* A complete server text frame (header + payload), shared by reference. */
struct wsmsg {
    int refs;
    size_t len;    /* frame bytes */
    size_t hdr;    /* header bytes before the payload */
    int64_t *sent; /* a counter cell: one more for each WebSocket it is sent on (NULL: none) */
    unsigned char data[];
};

/* Frame len bytes of text (copied) as one shared message with one
 * reference, or NULL when out of memory. */
struct wsmsg *wsmsg_new(const char *text, size_t len);
/* Drop a reference (NULL is fine). */
void wsmsg_unref(struct wsmsg *m);

struct ws_limits {
    int64_t max_message;      /* bytes of one message (1009 past it) */
    int64_t max_outbuf;       /* bytes queued to a client before it is closed (1008) */
    int64_t ping_interval_ms; /* silence before the server pings */
    int64_t idle_timeout_ms;  /* silence before the server drops the connection */
};

/* What happens on the WebSockets, for the layer above; user is what it gave
 * to ws_attach. */
struct ws_events {
    /* A complete text message (valid UTF-8), borrowed for the call. */
    void (*text)(void *user, const char *data, size_t len);
    /* The WebSocket is closing or gone: once, on a later loop turn than the
     * close. Nothing is delivered to it any more. */
    void (*closed)(void *user);
};

/* Limits and events (both copied). 0 or CHATD_ENOMEM. */
int ws_init(struct event_base *base, const struct ws_limits *limits, const struct ws_events *ev);
/* Tell the closes still waiting for their turn, and free what is left (shutdown). */
/* New limits (a reload): for what comes from now on. */
void ws_set_limits(const struct ws_limits *limits);
void ws_free(void);

/* Speak WebSocket on c from now on (the 101 was queued): reading resumes,
 * frames from the client go to events.text with user. 0 or CHATD_ENOMEM (c
 * is then aborted). */
int ws_attach(struct conn *c, void *user);
/* Whether c is an open WebSocket (not closing). */
int ws_is_open(const struct conn *c);
/* The user given to ws_attach of an open WebSocket, else NULL. */
void *ws_user(const struct conn *c);
/* Queue a shared message for c (a reference is taken, or the bytes copied);
 * closes a client whose output passed max_outbuf (1008). 0, or -1 when c is
 * not open or out of memory. */
int ws_send(struct conn *c, struct wsmsg *m);
/* Start the closing handshake with code and reason (borrowed). Idempotent. */
void ws_close(struct conn *c, uint16_t code, const char *reason);

/* Sec-WebSocket-Accept for a key: 28 characters + NUL into out. */
void ws_accept_key(const char *key, char out[29]);

#endif
