/*
 * Whether users are online on any node, in Redis, for presence told to
 * friends: per user a hash of the nodes holding a WebSocket of theirs (each
 * entry with an expiry the node's heartbeat renews, so a dead node's go),
 * and the state last told ("on", "leaving:<deadline>:<closed>" while a grace
 * runs, "off:<closed>"). Each change is one Lua script, so of several nodes
 * exactly one sees a transition. Loop thread only.
 */
#ifndef CHATD_USERPRES_H
#define CHATD_USERPRES_H

#include <stddef.h>
#include <stdint.h>

#include "redis.h"

/* The first member of the caller's state for a script's answer: result is
 * the script's integer, or -2 when Redis could not answer. */
struct userpres_call {
    struct redis_call call;
    void (*done)(struct userpres_call *c, long long result);
};

/* A first WebSocket of the user here: result 1 when the user was told
 * offline (or never told): tell "online" now. */
int userpres_online(int64_t user_id, int64_t expiry_ms, struct userpres_call *c);
/* The heartbeat: keep this node's entry of the user (and the state "on"
 * when Redis lost it). */
int userpres_refresh(int64_t user_id, int64_t expiry_ms);
/* The user's last WebSocket here went: result 1 when no node holds one and
 * a grace of grace_ms began (settle the user once it ended). */
int userpres_leave(int64_t user_id, int64_t now_ms, int64_t grace_ms, struct userpres_call *c);
/* After the grace: result > 0 (when the last WebSocket went, ms) when the
 * user is now told offline by this node; 0 when back online or settled
 * elsewhere; -1 when the grace has not ended. */
int userpres_settle(int64_t user_id, int64_t now_ms, struct userpres_call *c);

/* The sweep of what dead nodes left: entries past their expiry go, users
 * left with none begin their grace, and graces ended unsettled are settled.
 * One node a period does it. done gets the users this node now tells
 * offline, with when their last WebSocket went. */
struct userpres_sweep {
    struct redis_call call;
    void (*done)(struct userpres_sweep *s, const int64_t *users, const int64_t *closed_ms,
                 size_t n);
};
int userpres_sweep(int64_t now_ms, int64_t grace_ms, int64_t period_ms, struct userpres_sweep *s);

/* Which of ids[0..n) (borrowed until done) are told online ("on" or
 * "leaving"): online[i], or NULL when Redis could not answer. */
struct userpres_query {
    struct redis_call call;
    const int64_t *ids;
    size_t n;
    void (*done)(struct userpres_query *q, const unsigned char *online);
};
int userpres_query(struct userpres_query *q);

#endif
