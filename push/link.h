/*
 * One connection to Redis (hiredis async on libevent), made again with a
 * backoff (100 ms doubling to redis.reconnect_max_ms) whenever it is lost,
 * and dropped when Redis leaves a command unanswered longer than its
 * timeout. An outage is logged once, when the first connection goes, and
 * its end once, when every connection is back.
 */
#ifndef CHATD_PUSH_LINK_H
#define CHATD_PUSH_LINK_H

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "settings.h"

struct rlink;

/* An answer: r NULL when the connection went before it came. */
typedef void (*rlink_reply_fn)(void *arg, redisReply *r);
/* The link came up, or went down. */
typedef void (*rlink_state_fn)(void *arg, struct rlink *l);

/* A link named name (for the log) that connects at once. timeout_ms: how
 * long a command may wait for its answer. NULL when out of memory. */
struct rlink *rlink_new(struct event_base *base, const struct pconf *c, const char *name,
                        int64_t timeout_ms, rlink_state_fn up, rlink_state_fn down, void *arg);
int rlink_is_up(const struct rlink *l);
/* Send one command; fn(arg, reply) runs later, exactly once. -1 when the
 * link is down (fn never runs). */
int rlink_cmd(struct rlink *l, int argc, const char **argv, const size_t *lens, rlink_reply_fn fn,
              void *arg);
/* The same with NUL-terminated arguments. */
int rlink_cmdv(struct rlink *l, int argc, const char **argv, rlink_reply_fn fn, void *arg);
/* Close: what waits for an answer is told NULL. Not from inside one of
 * this link's callbacks. */
void rlink_free(struct rlink *l);
/* Connections lost since start-up, every link counted. */
uint64_t rlink_losses(void);

#endif
