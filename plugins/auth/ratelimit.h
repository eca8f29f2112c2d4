/* Failure counters in fixed windows, keyed by a string (username, address).
 * Loop thread only. */
#ifndef CHATD_AUTH_RATELIMIT_H
#define CHATD_AUTH_RATELIMIT_H

#include <chatd/plugin.h>
#include <stdint.h>

struct ratelimit;

/* At most max failures per window_ms for each key; memory bounded by sweeping
 * expired keys. Keeps its keys in a map of h's (borrowed for its life). */
struct ratelimit *ratelimit_new(const chatd_host *h, int64_t max, int64_t window_ms);
void ratelimit_free(struct ratelimit *r);
/* Whether key has used up its failures at now_ms. */
int ratelimit_blocked(struct ratelimit *r, const char *key, int64_t now_ms);
/* Count one failure for key. */
void ratelimit_fail(struct ratelimit *r, const char *key, int64_t now_ms);
/* Forget key's failures (after a success). */
void ratelimit_reset(struct ratelimit *r, const char *key);

#endif
