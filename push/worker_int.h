/* The parts of the worker shared by worker.c (the stream and the group) and
 * entry.c (one entry from taken to acknowledged). */
#ifndef CHATD_PUSH_WORKER_INT_H
#define CHATD_PUSH_WORKER_INT_H

#include <hiredis/hiredis.h>

#include "hmap.h"
#include "link.h"
#include "webhook_client.h"
#include "worker.h"

#define SID_MAX 48 /* a stream entry id: "<ms>-<seq>" */
#define NOTIFICATION_ID_MAX 128

enum estate {
    E_COUNTING, /* XPENDING for its delivery count (taken over) */
    E_POSTING,  /* the webhook request under way */
    E_WAITING,  /* for its next step's time (a retry's backoff) */
    E_CLAIMING, /* XCLAIM before a retry: counts the attempt */
    E_ACKING,   /* XACK (and XDEL) under way */
    E_DEADING,  /* XADD to the dead stream under way */
    E_PARKED,   /* its next step needs Redis, which is away */
};

enum estep { S_COUNT, S_POST, S_CLAIM, S_ACK, S_DEAD };

struct entry {
    struct worker *w;
    char sid[SID_MAX];
    const char *id, *body, *user_id; /* in f[]; NULL when the entry has none */
    size_t body_len;
    char **f; /* field, value, field, value, ... as the stream holds them */
    size_t *flen, nf;
    int64_t attempts; /* the entry's delivery count in the group */
    enum estate state;
    enum estep next; /* what a WAITING or PARKED entry does next */
    char why[200];   /* the last failure */
    struct event *timer;
    struct entry *prev, *after;
};

struct worker {
    struct event_base *base;
    const struct pconf *c;
    struct rlink *cmd, *rd; /* commands; the blocking XREADGROUP */
    struct webhook *hook;
    hmap *by_sid;         /* sid -> entry held */
    struct entry *first;  /* every entry held */
    size_t held, posting; /* entries held; POSTs under way */
    int group_ready, announced, creating, reading, claiming, claim_due;
    int stopping, freeing;
    struct event *tick, *read_later;
    char cursor[SID_MAX]; /* where the next XAUTOCLAIM starts */
    char complaint[256];  /* the last Redis error logged */
    uint64_t rng;
    struct wstats st;
};

/* entry.c */
/* A held entry from a stream reply [sid, [field, value, ...]] (NULL when it
 * has another shape, is held already, or memory ran out). */
struct entry *entry_take(struct worker *w, const redisReply *r);
/* Its first step: attempts known (a new entry: 1) or to be counted (-1). */
void entry_start(struct entry *e, int64_t attempts);
/* Redis is back: a PARKED entry takes its step. */
void entry_resume(struct entry *e);
/* No longer pending for this worker (another took it). */
void entry_gone(struct entry *e, const char *how);
/* Left pending for other workers (shutdown). */
void entry_abandon(struct entry *e);
/* Free without a word (the worker is freed). */
void entry_free(struct entry *e);

/* worker.c: an entry is no longer held (room to read more). */
void worker_released(struct worker *w);

#endif
