/*
 * Who is here, on this node: the WebSockets of each user and the WebSockets
 * entered in each channel (one active channel per WebSocket). Loop thread only.
 */
#ifndef CHATD_PRESENCE_H
#define CHATD_PRESENCE_H

#include <stdint.h>

struct conn;

int presence_init(void);
void presence_free(void);

/* Index an authenticated WebSocket under its user (c->user_id). */
int presence_add(struct conn *c);
/* Remove it from every index (idempotent). */
void presence_remove(struct conn *c);
/* First WebSocket of a user (follow c->u_next), or NULL. */
struct conn *presence_user_conns(int64_t user_id);
/* Make channel_id the WebSocket's active channel; 0 leaves. */
int presence_enter(struct conn *c, int64_t channel_id);
/* First WebSocket entered in a channel (follow c->c_next), or NULL. */
struct conn *presence_channel_conns(int64_t channel_id);
/* Whether any WebSocket of the user is entered in the channel. */
int presence_user_in_channel(int64_t user_id, int64_t channel_id);
/* Leave the channel on every WebSocket of the user entered in it. */
void presence_user_leave_channel(int64_t user_id, int64_t channel_id);
/* fn(channel, user, arg) for every WebSocket entered in a channel (a user may
 * come more than once). The indexes must not change meanwhile. */
void presence_each_entered(void (*fn)(int64_t channel_id, int64_t user_id, void *arg), void *arg);
/* WebSockets indexed. */
long presence_count(void);

#endif
