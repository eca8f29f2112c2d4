/*
 * The worker: one consumer of the push stream's consumer group. It reads
 * new entries (XREADGROUP), takes over those another worker left pending
 * longer than claim_after_ms (XAUTOCLAIM), POSTs each entry's body and, on a
 * 2xx, acknowledges it (XACK, then XDEL). A failed POST is retried with
 * exponential backoff and jitter; the attempts are Redis's delivery count of
 * the entry, so they add up across workers; at max_attempts the entry goes
 * to the dead stream with the last error and is acknowledged.
 */
#ifndef CHATD_PUSH_WORKER_H
#define CHATD_PUSH_WORKER_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "settings.h"

struct worker;

struct wstats {
    uint64_t read;      /* new entries read from the stream */
    uint64_t claimed;   /* entries taken over from other workers */
    uint64_t delivered; /* POSTs answered 2xx */
    uint64_t failed;    /* POSTs that failed (each retried or dead-lettered) */
    uint64_t dead;      /* entries written to the dead stream */
    uint64_t dropped;   /* entries no longer pending for this worker (taken by another) */
    uint64_t abandoned; /* entries left pending at shutdown, for other workers */
    uint64_t redis_losses;
    size_t held, posting; /* now: entries held, POSTs under way */
};

/* A worker on base (c borrowed). NULL with the reason in err. */
struct worker *worker_new(struct event_base *base, const struct pconf *c, char *err, size_t errlen);
/* Shutdown: read no more, leave what waits for a retry pending for other
 * workers; the POSTs under way finish (and are acknowledged). */
void worker_stop(struct worker *w);
/* Entries still being finished after worker_stop. */
size_t worker_busy(const struct worker *w);
/* After the last entry: leave the group when nothing is pending for this
 * consumer, then done(arg) (at once when Redis is away). */
void worker_goodbye(struct worker *w, void (*done)(void *arg), void *arg);
void worker_stats(const struct worker *w, struct wstats *out);
/* Free; what is still under way is abandoned (left pending). */
void worker_free(struct worker *w);

#endif
