/*
 * The stream and the group: the group made (XGROUP CREATE ... 0 MKSTREAM,
 * so entries added before the first worker started are read too), new
 * entries read while fewer than max_in_flight are held, and, every
 * claim_after_ms / 3: the idle time of the entries held reset (XCLAIM
 * JUSTID, which does not count as a delivery) so that no other worker takes
 * them, and the entries other workers left idle longer than claim_after_ms
 * taken over (XAUTOCLAIM). A read and a claim never run at once, each asking
 * for the room left, so that no more than max_in_flight entries are held: a
 * claim due waits for the read under way (block_ms at most). The steps of
 * each entry are in entry.c.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "worker_int.h"

#define LOG(level, ...) log_msg(level, "chatd-push", __VA_ARGS__)

static void next_batch(struct worker *w);

static int error_is(const redisReply *r, const char *code)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, code, strlen(code)) == 0;
}

/* An error Redis keeps giving is logged once, until things go well again. */
static void complain(struct worker *w, const char *what, const char *error)
{
    char line[sizeof w->complaint];
    snprintf(line, sizeof line, "%s %s: %s", what, w->c->stream, error);
    if (strcmp(line, w->complaint) == 0)
        return;
    snprintf(w->complaint, sizeof w->complaint, "%s", line);
    LOG(CHATD_LOG_ERROR, "%s (tried again)", line);
}

/* ---- the group ---- */

static void group_made(void *arg, redisReply *r)
{
    struct worker *w = arg;
    w->creating = 0;
    if (w->freeing || !r)
        return; /* made again when the link is back */
    if (r->type == REDIS_REPLY_ERROR && !error_is(r, "BUSYGROUP")) {
        complain(w, "XGROUP CREATE", r->str);
        return;
    }
    w->complaint[0] = '\0';
    if (!w->announced)
        LOG(CHATD_LOG_INFO, "reading %s as %s in the group %s", w->c->stream, w->c->consumer,
            w->c->group);
    else if (r->type != REDIS_REPLY_ERROR)
        LOG(CHATD_LOG_WARN, "the group %s of %s was gone (Redis lost its data?): made again",
            w->c->group, w->c->stream);
    w->announced = 1;
    w->group_ready = 1;
    w->claim_due = 1;
    next_batch(w);
}

static void make_group(struct worker *w)
{
    const char *argv[] = {"XGROUP", "CREATE", w->c->stream, w->c->group, "0", "MKSTREAM"};
    if (w->creating || w->stopping || rlink_cmdv(w->cmd, 6, argv, group_made, w) < 0)
        return;
    w->creating = 1;
}

/* ---- new entries ---- */

static void take_all(struct worker *w, const redisReply *entries, int64_t attempts,
                     uint64_t *counter)
{
    for (size_t i = 0; entries && i < entries->elements; i++) {
        struct entry *e = entry_take(w, entries->element[i]);
        if (e) {
            (*counter)++;
            entry_start(e, attempts);
        }
    }
}

static void on_read_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    next_batch(arg);
}

static void read_reply(void *arg, redisReply *r)
{
    struct worker *w = arg;
    w->reading = 0;
    if (w->freeing || !r || w->stopping)
        return; /* lost: read again once the link is back */
    if (error_is(r, "NOGROUP")) {
        /* Redis lost the stream (a restart without persistence): afresh */
        w->group_ready = 0;
        make_group(w);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        complain(w, "XREADGROUP", r->str);
        struct timeval tv = {w->c->block_ms / 1000, (w->c->block_ms % 1000) * 1000};
        evtimer_add(w->read_later, &tv);
        return;
    }
    w->complaint[0] = '\0';
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *s = r->element[i]; /* [stream, entries] */
        if (s->type == REDIS_REPLY_ARRAY && s->elements == 2)
            take_all(w, s->element[1], 1, &w->st.read);
    }
    next_batch(w);
}

static void read_more(struct worker *w)
{
    if (!rlink_is_up(w->rd) || w->held >= (size_t)w->c->max_in_flight ||
        evtimer_pending(w->read_later, NULL))
        return;
    char count[24], block[24];
    snprintf(count, sizeof count, "%zu", (size_t)w->c->max_in_flight - w->held);
    snprintf(block, sizeof block, "%lld", (long long)w->c->block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", w->c->group, w->c->consumer, "COUNT", count,
                          "BLOCK",      block,   "STREAMS",   w->c->stream,   ">"};
    if (rlink_cmdv(w->rd, 11, argv, read_reply, w) == 0)
        w->reading = 1;
}

void worker_released(struct worker *w)
{
    next_batch(w);
}

/* ---- entries left by others ---- */

static void autoclaimed(void *arg, redisReply *r)
{
    struct worker *w = arg;
    w->claiming = 0;
    if (w->freeing || !r || w->stopping) {
        w->claim_due = 0; /* link lost: due again once the group is back */
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        w->claim_due = 0;
        if (error_is(r, "NOGROUP")) {
            w->group_ready = 0;
            make_group(w);
            return;
        }
        complain(w, "XAUTOCLAIM",
                 r->type == REDIS_REPLY_ERROR ? r->str : "an answer of another shape");
        next_batch(w);
        return;
    }
    snprintf(w->cursor, sizeof w->cursor, "%s", r->element[0]->str);
    take_all(w, r->element[1], -1, &w->st.claimed);
    const redisReply *deleted = r->elements > 2 ? r->element[2] : NULL;
    if (deleted && deleted->type == REDIS_REPLY_ARRAY && deleted->elements)
        LOG(CHATD_LOG_WARN,
            "%zu pending entries of %s were gone from the stream before delivery "
            "(trimmed: max_length too small for the backlog?)",
            deleted->elements, w->c->stream);
    if (strcmp(w->cursor, "0-0") == 0)
        w->claim_due = 0; /* else the rest of the pending list, while there is room */
    next_batch(w);
}

static void autoclaim(struct worker *w)
{
    if (w->held >= (size_t)w->c->max_in_flight) {
        w->claim_due = 0; /* no room: at the next tick */
        return;
    }
    char idle[24], count[24];
    snprintf(idle, sizeof idle, "%lld", (long long)w->c->claim_after_ms);
    snprintf(count, sizeof count, "%zu", (size_t)w->c->max_in_flight - w->held);
    const char *argv[] = {"XAUTOCLAIM", w->c->stream, w->c->group, w->c->consumer,
                          idle,         w->cursor,    "COUNT",     count};
    if (rlink_cmdv(w->cmd, 8, argv, autoclaimed, w) == 0)
        w->claiming = 1;
    else
        w->claim_due = 0;
}

/* A claim when one is due, else a read; one at a time. */
static void next_batch(struct worker *w)
{
    if (w->stopping || !w->group_ready || w->reading || w->claiming)
        return;
    if (w->claim_due)
        autoclaim(w);
    if (!w->claiming)
        read_more(w);
}

/* ---- keeping what is held ---- */

struct refresh {
    struct worker *w;
    size_t n;
    char (*sids)[SID_MAX];
};

/* The ids claimed come back in the order asked: a held entry not among them
 * is pending for this worker no more. */
static void refreshed(void *arg, redisReply *r)
{
    struct refresh *rf = arg;
    struct worker *w = rf->w;
    if (!w->freeing && r && r->type == REDIS_REPLY_ARRAY) {
        size_t j = 0;
        for (size_t i = 0; i < rf->n; i++) {
            if (j < r->elements && r->element[j]->type == REDIS_REPLY_STRING &&
                strcmp(r->element[j]->str, rf->sids[i]) == 0) {
                j++;
                continue;
            }
            struct entry *e = hmap_get_str(w->by_sid, rf->sids[i]);
            if (e && e->state == E_WAITING) {
                event_del(e->timer);
                entry_gone(e, "no longer pending while it waited for its retry");
            }
        }
    }
    free(rf->sids);
    free(rf);
}

static void refresh(struct worker *w)
{
    if (!w->held || !rlink_is_up(w->cmd))
        return;
    struct refresh *rf = calloc(1, sizeof *rf);
    size_t n = w->held + 6;
    const char **argv = malloc(n * sizeof *argv);
    if (!rf || !argv || !(rf->sids = malloc(w->held * sizeof *rf->sids))) {
        free(rf ? rf->sids : NULL);
        free(rf);
        free(argv);
        return;
    }
    rf->w = w;
    const char *head[] = {"XCLAIM", w->c->stream, w->c->group, w->c->consumer, "0"};
    size_t k = 0;
    for (; k < 5; k++)
        argv[k] = head[k];
    for (struct entry *e = w->first; e; e = e->after)
        if (e->state != E_CLAIMING && e->state != E_COUNTING) {
            snprintf(rf->sids[rf->n], SID_MAX, "%s", e->sid);
            argv[k++] = rf->sids[rf->n++];
        }
    argv[k++] = "JUSTID";
    if (!rf->n || rlink_cmdv(w->cmd, (int)k, argv, refreshed, rf) < 0) {
        free(rf->sids);
        free(rf);
    }
    free(argv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    if (w->stopping)
        return;
    if (!w->group_ready) {
        make_group(w);
        return;
    }
    refresh(w);
    w->claim_due = 1;
    next_batch(w);
}

/* ---- the links ---- */

static void cmd_up(void *arg, struct rlink *l)
{
    (void)l;
    struct worker *w = arg;
    refresh(w); /* before another worker claims what was held through the outage */
    make_group(w);
    for (struct entry *e = w->first, *next; e; e = next) {
        next = e->after;
        entry_resume(e);
    }
}

static void cmd_down(void *arg, struct rlink *l)
{
    (void)l;
    struct worker *w = arg;
    w->group_ready = 0; /* Redis may come back without it */
}

static void rd_up(void *arg, struct rlink *l)
{
    (void)l;
    next_batch(arg);
}

static void rd_down(void *arg, struct rlink *l)
{
    (void)l;
    struct worker *w = arg;
    w->reading = 0;
}

/* ---- the worker ---- */

static uint64_t seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
    return s ? s : 0x9e3779b97f4a7c15ull;
}

struct worker *worker_new(struct event_base *base, const struct pconf *c, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->base = base;
    w->c = c;
    w->rng = seed();
    snprintf(w->cursor, sizeof w->cursor, "0-0");
    struct webhook_conf wc = {c->url, c->secret, c->timeout_ms, c->ca_file};
    if (!(w->hook = webhook_new(base, &wc, err, errlen))) {
        free(w);
        return NULL;
    }
    int64_t tick = c->claim_after_ms / 3 > 10 ? c->claim_after_ms / 3 : 10;
    struct timeval tv = {tick / 1000, (tick % 1000) * 1000};
    if (!(w->by_sid = hmap_new(1)) || !(w->read_later = evtimer_new(base, on_read_later, w)) ||
        !(w->tick = event_new(base, -1, EV_PERSIST, on_tick, w)) || event_add(w->tick, &tv) < 0 ||
        !(w->cmd = rlink_new(base, c, "commands", c->command_timeout_ms, cmd_up, cmd_down, w)) ||
        !(w->rd = rlink_new(base, c, "reads", c->block_ms + c->command_timeout_ms, rd_up, rd_down,
                            w))) {
        snprintf(err, errlen, "out of memory");
        worker_free(w);
        return NULL;
    }
    return w;
}

void worker_stop(struct worker *w)
{
    w->stopping = 1;
    rlink_free(w->rd); /* no more entries: what Redis sent meanwhile stays pending */
    w->rd = NULL;
    for (struct entry *e = w->first, *next; e; e = next) {
        next = e->after;
        if (e->state == E_WAITING || e->state == E_PARKED) {
            event_del(e->timer);
            entry_abandon(e);
        }
    }
}

size_t worker_busy(const struct worker *w)
{
    return w->held;
}

struct goodbye {
    struct worker *w;
    void (*done)(void *arg);
    void *arg;
};

static void left(void *arg, redisReply *r)
{
    (void)r;
    struct goodbye *g = arg;
    void (*done)(void *) = g->done;
    void *done_arg = g->arg;
    free(g);
    done(done_arg);
}

static void own_pending(void *arg, redisReply *r)
{
    struct goodbye *g = arg;
    struct worker *w = g->w;
    const char *argv[] = {"XGROUP", "DELCONSUMER", w->c->stream, w->c->group, w->c->consumer};
    /* nothing pending for this consumer: its name can go from the group */
    if (w->freeing || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 0 ||
        rlink_cmdv(w->cmd, 5, argv, left, g) < 0)
        left(g, NULL);
}

void worker_goodbye(struct worker *w, void (*done)(void *arg), void *arg)
{
    struct goodbye *g = malloc(sizeof *g);
    const char *argv[] = {"XPENDING", w->c->stream, w->c->group, "-", "+", "1", w->c->consumer};
    if (!g) {
        done(arg);
        return;
    }
    *g = (struct goodbye){w, done, arg};
    if (rlink_cmdv(w->cmd, 7, argv, own_pending, g) < 0)
        left(g, NULL);
}

void worker_stats(const struct worker *w, struct wstats *out)
{
    *out = w->st;
    out->held = w->held;
    out->posting = w->posting;
    out->redis_losses = rlink_losses();
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    w->freeing = 1;
    webhook_free(w->hook); /* its answers, "cancelled", go to nobody */
    rlink_free(w->rd);
    rlink_free(w->cmd); /* the answers it waited for: NULL, to nobody */
    while (w->first) {
        struct entry *e = w->first;
        w->first = e->after;
        w->st.abandoned++;
        entry_free(e);
    }
    hmap_free(w->by_sid);
    if (w->tick)
        event_free(w->tick);
    if (w->read_later)
        event_free(w->read_later);
    free(w);
}
