/*
 * Who Redis lately found entered in a channel, on some node: the push
 * decision of the next writes in the channel counts them as entered for
 * redis.entered_cache_ms (their write stores no push intent; the check after
 * the commit still finds who left, and pushes to them from memory). A
 * direct-mapped table of redis.entered_cache_slots entries: a collision
 * forgets an entry, which only costs a write its push intent, never a push.
 * Loop thread only.
 */
#ifndef CHATD_CLUSTER_SEEN_H
#define CHATD_CLUSTER_SEEN_H

#include <stddef.h>
#include <stdint.h>

/* 0, or CHATD_ENOMEM; slots or keep_ms 0: nobody counts as seen. */
int seen_init(size_t slots, int64_t keep_ms);
void seen_free(void);
/* What Redis said of the user at now_ms (monotonic): entered or not. */
void seen_note(int64_t channel_id, int64_t user_id, int entered, int64_t now_ms);
/* Whether Redis said the user was entered within keep_ms before now_ms. */
int seen_entered(int64_t channel_id, int64_t user_id, int64_t now_ms);

#endif
