/*
 * The WebSocket layer: handshake answer, wslay framing over the
 * connection's bufferevent, server pings, close codes, and shared outgoing
 * frames (encoded once, referenced by every recipient's buffer). Loop thread.
 */
#ifndef CHATD_WS_H
#define CHATD_WS_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct chatd_http;
struct session;

/* A complete server text frame (header + payload), shared by reference. */
struct wsmsg {
    int refs;
    size_t len;        /* frame bytes */
    size_t hdr;        /* header bytes before the payload */
    unsigned char data[];
};

/* Frame len bytes of text (copied) as one shared message with one reference. */
struct wsmsg *wsmsg_new(const char *text, size_t len);
void wsmsg_unref(struct wsmsg *m);

/* Answer the handshake of req with 101 and open the WebSocket for session. Completes req. */
void ws_upgrade(struct chatd_http *req, struct session *s);
/* Read frames from the connection's input. */
void ws_conn_read(struct conn *c);
/* Queue a shared message; closes a client whose buffer passed ws.max_outbuf (1008). */
int ws_send(struct conn *c, struct wsmsg *m);
/* Start the closing handshake with code and reason (borrowed). */
void ws_close(struct conn *c, uint16_t code, const char *reason);
/* Send a ping when the last one is older than interval_ms. */
void ws_ping_if_due(struct conn *c, int64_t now_ms, int64_t interval_ms);
/* Whether we sent a close frame and still wait for the peer's. */
int ws_wants_close_frame(struct conn *c);
void ws_conn_free(struct conn *c);

/* Whether s[0..len) is valid UTF-8 (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
int utf8_valid(const unsigned char *s, size_t len);
/* Sec-WebSocket-Accept for a key: 28 characters + NUL into out. */
void ws_accept_key(const char *key, char out[29]);

#endif
