/*
 * Who is here, on this node: the clients of each user and the clients
 * entered in each channel (one active channel per WebSocket). The first and
 * last of each are told to the observer given at init (the cluster bus
 * subscribes to what other nodes send for them). Loop thread only.
 */
#ifndef CHATD_PRESENCE_H
#define CHATD_PRESENCE_H

#include <stdint.h>

struct client;

/* What changes in the indexes, for the nodes' bus; every callback optional. */
struct presence_observer {
    /* The first client of a user here (on = 1), or the last one left (0). */
    void (*user_interest)(int64_t user_id, int on);
    /* The first client entered in a channel here, or the last one left. */
    void (*channel_interest)(int64_t channel_id, int on);
    /* A user's first client here entered the channel (on = 1), or the last left. */
    void (*entered)(int64_t channel_id, int64_t user_id, int on);
};

/* 0 or CHATD_ENOMEM; ob copied. */
int presence_init(const struct presence_observer *ob);
void presence_free(void);

/* Index a client under its user (c->user_id). 0 or CHATD_ENOMEM. */
int presence_add(struct client *c);
/* Remove it from every index (idempotent). */
void presence_remove(struct client *c);
/* First client of a user (follow c->u_next), or NULL. */
struct client *presence_user_clients(int64_t user_id);
/* Make channel_id the client's active channel; 0 leaves. 0 or CHATD_ENOMEM. */
int presence_enter(struct client *c, int64_t channel_id);
/* First client entered in a channel (follow c->c_next), or NULL. */
struct client *presence_channel_clients(int64_t channel_id);
/* Whether a client of the user with an open WebSocket is entered in the channel. */
int presence_user_in_channel(int64_t user_id, int64_t channel_id);
/* Whether the user has a client with an open WebSocket here. */
int presence_user_online(int64_t user_id);
/* Leave the channel on every client of the user entered in it. */
void presence_user_leave_channel(int64_t user_id, int64_t channel_id);
/* fn(channel, user, arg) for every client entered in a channel (a user may
 * come more than once). The indexes must not change meanwhile. */
void presence_each_entered(void (*fn)(int64_t channel_id, int64_t user_id, void *arg), void *arg);
/* fn(user, arg) for every user with a client here. The indexes must not
 * change meanwhile. */
void presence_each_user(void (*fn)(int64_t user_id, void *arg), void *arg);
/* Clients indexed. */
long presence_count(void);
/* Users with a client here. */
long presence_users(void);
/* Channels with a client entered here; clients entered in a channel. */
long presence_channel_count(void);
long presence_entered_count(void);

#endif
