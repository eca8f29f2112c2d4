/*
 * Delivery across nodes over Redis pub/sub: one topic per channel and one
 * per user, subscribed while a WebSocket here needs it; and, for push
 * decisions, which users are entered in which channel on any node (a Redis
 * hash per channel, entries refreshed by a heartbeat so a dead node's
 * expire). What other nodes send is handed to the events given at init.
 * Everything is a no-op on a single node (no redis.host). Loop thread only.
 */
#ifndef CHATD_BUS_H
#define CHATD_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "redis.h"

struct event_base;
struct settings;

/* What the other nodes send this one (every pointer borrowed for the call). */
struct bus_events {
    /* A frame's JSON for the WebSockets here entered in the channel / of the
     * user (but those entered in except_channel, when not 0). */
    void (*channel_frame)(int64_t channel_id, const char *json, size_t len);
    void (*user_frame)(int64_t user_id, int64_t except_channel, const char *json, size_t len);
    /* Clear the user's WebSockets here entered in the channel. */
    void (*user_leave)(int64_t user_id, int64_t channel_id);
    /* Call fn for every (channel, user) entered here, for the heartbeat. */
    void (*each_entered)(void (*fn)(int64_t channel_id, int64_t user_id, void *arg), void *arg);
};

/* Start (with Redis configured): the node's id, subscriptions, heartbeat.
 * ev is copied. 0 or CHATD_ENOMEM. */
int bus_init(struct event_base *base, const struct settings *s, const struct bus_events *ev);
void bus_free(void);
/* This process's random node id (16 hex characters; "" on a single node). */
const char *bus_node(void);

/* A first WebSocket here needs the topic (on = 1), or the last one left (0). */
void bus_user_interest(int64_t user_id, int on);
void bus_channel_interest(int64_t channel_id, int on);
/* A user's first WebSocket here entered the channel (on = 1), or the last left. */
void bus_entered(int64_t channel_id, int64_t user_id, int on);

/* Tell the other nodes to clear the user's WebSockets entered in the channel. */
void bus_user_leave_channel(int64_t user_id, int64_t channel_id);
/* Hand a frame's JSON (borrowed) to the other nodes' WebSockets of the channel. */
void bus_publish_channel(int64_t channel_id, const char *json, size_t len);

/* How many other nodes hold a WebSocket of a user: the first member of the
 * caller's state for bus_publish_user; done gets n (-1 when Redis could not
 * say), on the loop, maybe before bus_publish_user returns. */
struct bus_receivers {
    struct redis_call call;
    void (*done)(struct bus_receivers *r, long n);
};
/* Hand a frame's JSON to the other nodes' WebSockets of the user, but those
 * entered in except_channel (0: none); r may be NULL. */
void bus_publish_user(int64_t user_id, int64_t except_channel, const char *json, size_t len,
                      struct bus_receivers *r);

/* Which of users ids[0..n) (borrowed until done) are entered in a channel
 * on some node: the first member of the caller's state. done gets set[i] =
 * 1 for those, or set NULL when Redis could not say. */
struct bus_who {
    struct redis_call call;
    const int64_t *ids;
    size_t n;
    void (*done)(struct bus_who *w, const char *set);
    int64_t channel_id; /* bus_who_entered's */
};
/* Ask (done runs later, or at once when it cannot be asked). What Redis
 * answers is remembered for redis.entered_cache_ms (seen.h). */
void bus_who_entered(int64_t channel_id, struct bus_who *w);
/* Whether the last answer, within redis.entered_cache_ms, found the user
 * entered in the channel on some node. */
int bus_entered_lately(int64_t channel_id, int64_t user_id);

#endif
