/*
 * Who an HTTP request is: the session token it carries (CHATSESSION cookie,
 * Bearer header, or on the WebSocket URL the access_token parameter), and
 * the WebSocket handshake's policy (headers, origin, the user's WebSocket
 * count) up to the client it opens. Loop thread only.
 */
#ifndef CHATD_HANDSHAKE_H
#define CHATD_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct chatd_http;

struct handshake_config {
    char *const *allowed_origins; /* NULL-terminated; empty: any (borrowed) */
    int64_t max_per_user;         /* WebSockets of one user on this node */
};

/* Routes the WebSocket endpoint (path) with this policy (copied). 0 or a negative code. */
/* New settings (a reload). */
void handshake_configure(const struct handshake_config *cfg);
int handshake_init(const struct handshake_config *cfg, const char *path);
/* The router's authentication hook: the session behind req's token. */
void handshake_auth(struct chatd_http *req, router_auth_done done);

#endif
