/* Counters shared by every node, in Redis, that live a window of seconds
 * from their first increment (login failures counted across nodes, say).
 * Loop thread only. */
#ifndef CHATD_COUNTER_H
#define CHATD_COUNTER_H

#include <stdint.h>

#include "redis.h"

/* The first member of the caller's state: done gets status 0 and the count,
 * or CHATD_EUNAVAIL, on the loop. */
struct redis_count {
    struct redis_call call;
    void (*done)(struct redis_count *c, int status, int64_t count);
};

/* add > 0 increments <prefix>count:<key> (borrowed), 0 reads it, < 0 deletes
 * it. CHATD_EUNAVAIL at once, with done not called, when Redis is not
 * configured or not connected. */
int redis_shared_count(const char *key, int64_t add, int64_t window_s, struct redis_count *c);

#endif
