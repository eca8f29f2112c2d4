/*
 * One authenticated WebSocket: a device of a user. Sessions list their
 * clients, presence indexes them by user and by entered channel; the links
 * are the clients' own, so indexing allocates nothing. Owned by the app
 * layer, which makes one at the upgrade and frees it when the WebSocket's
 * close is told (ws.h). Loop thread only.
 */
#ifndef CHATD_CLIENT_H
#define CHATD_CLIENT_H

#include <stdint.h>

struct conn;
struct session;

struct client {
    uint64_t id;             /* its connection's id */
    struct conn *conn;       /* valid until the client is freed */
    struct session *session; /* NULL once the session ended */
    int64_t user_id;
    char *username;                 /* the session's, copied: the client may outlive it */
    int64_t channel_id;             /* the active (entered) channel, or 0 */
    double tokens;                  /* messages the client may still send now (ws.rate_limit) */
    int64_t tokens_ms;              /* when tokens was last refilled */
    int indexed;                    /* in presence's indexes */
    struct client *s_prev, *s_next; /* the clients of the same session */
    struct client *u_prev, *u_next; /* the clients of the same user on this node */
    struct client *c_prev, *c_next; /* the clients entered in the same channel */
};

/* The client of the open WebSocket with this connection id, or NULL. */
struct client *client_find(uint64_t conn_id);

#endif
