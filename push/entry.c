/*
 * One entry from the moment the worker holds it to the moment it lets it go:
 *
 *   taken over --XPENDING--> (delivery count known)
 *   POST --2xx--> XACK (+ XDEL) --> released
 *        --fail--> attempts < max_attempts: wait backoff, XCLAIM (counts
 *                  the attempt, and says whether it is still ours), POST
 *                  attempts = max_attempts: XADD to the dead stream, XACK
 *
 * A step that needs Redis while it is away parks the entry until Redis is
 * back. During shutdown nothing new starts: an entry that would wait or
 * park is abandoned instead (left pending, for another worker to claim).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker_int.h"

#define LOG(level, ...) log_msg(level, "chatd-push", __VA_ARGS__)

static void step(struct entry *e, enum estep s);

/* ---- holding and letting go ---- */

static int id_ok(const char *id, size_t len)
{
    if (len == 0 || len >= NOTIFICATION_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == ':'))
            return 0; /* it goes into a header line */
    }
    return 1;
}

static int copy_fields(struct entry *e, const redisReply *fields)
{
    e->nf = fields->elements;
    if (!(e->f = calloc(e->nf ? e->nf : 1, sizeof *e->f)) ||
        !(e->flen = calloc(e->nf ? e->nf : 1, sizeof *e->flen)))
        return -1;
    for (size_t i = 0; i < e->nf; i++) {
        const redisReply *v = fields->element[i];
        if (!(e->f[i] = malloc(v->len + 1)))
            return -1;
        memcpy(e->f[i], v->str, v->len);
        e->f[i][v->len] = '\0';
        e->flen[i] = v->len;
    }
    for (size_t i = 0; i + 1 < e->nf; i += 2) {
        const char *name = e->f[i], *value = e->f[i + 1];
        if (strcmp(name, "id") == 0 && id_ok(value, e->flen[i + 1]))
            e->id = value;
        else if (strcmp(name, "body") == 0 && e->flen[i + 1] > 0)
            e->body = value, e->body_len = e->flen[i + 1];
        else if (strcmp(name, "userId") == 0)
            e->user_id = value;
    }
    return 0;
}

static int entry_shape_ok(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= SID_MAX ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2)
        return 0;
    for (size_t i = 0; i < r->element[1]->elements; i++)
        if (r->element[1]->element[i]->type != REDIS_REPLY_STRING)
            return 0;
    return 1;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct entry *e = arg;
    step(e, e->next);
}

struct entry *entry_take(struct worker *w, const redisReply *r)
{
    if (!entry_shape_ok(r) || hmap_get_str(w->by_sid, r->element[0]->str))
        return NULL;
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->w = w;
    snprintf(e->sid, sizeof e->sid, "%s", r->element[0]->str);
    if (copy_fields(e, r->element[1]) < 0 || !(e->timer = evtimer_new(w->base, on_timer, e)) ||
        hmap_put_str(w->by_sid, e->sid, e) < 0) {
        LOG(CHATD_LOG_ERROR, "out of memory: entry %s left pending", e->sid);
        entry_free(e);
        return NULL;
    }
    e->after = w->first;
    if (w->first)
        w->first->prev = e;
    w->first = e;
    w->held++;
    return e;
}

void entry_free(struct entry *e)
{
    for (size_t i = 0; e->f && i < e->nf; i++)
        free(e->f[i]);
    free(e->f);
    free(e->flen);
    if (e->timer)
        event_free(e->timer);
    free(e);
}

static void release(struct entry *e)
{
    struct worker *w = e->w;
    if (e->prev)
        e->prev->after = e->after;
    else
        w->first = e->after;
    if (e->after)
        e->after->prev = e->prev;
    hmap_del_str(w->by_sid, e->sid);
    w->held--;
    entry_free(e);
    worker_released(w);
}

void entry_gone(struct entry *e, const char *how)
{
    e->w->st.dropped++;
    LOG(CHATD_LOG_INFO, "entry %s (notification %s) %s: let go", e->sid, e->id ? e->id : "?", how);
    release(e);
}

void entry_abandon(struct entry *e)
{
    e->w->st.abandoned++;
    release(e);
}

/* The next step s needs Redis, which is away. */
static void park(struct entry *e, enum estep s)
{
    if (e->w->stopping) {
        entry_abandon(e);
        return;
    }
    e->state = E_PARKED;
    e->next = s;
}

static void wait_then(struct entry *e, int64_t ms, enum estep s)
{
    if (e->w->stopping) {
        entry_abandon(e);
        return;
    }
    e->state = E_WAITING;
    e->next = s;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(e->timer, &tv);
}

void entry_resume(struct entry *e)
{
    if (e->state == E_PARKED)
        step(e, e->next);
}

/* backoff_ms doubling per attempt up to backoff_max_ms, a random half of it
 * taken off, so that the retries of many entries spread out. */
static int64_t backoff(struct worker *w, int64_t attempts)
{
    int64_t d = w->c->backoff_ms;
    for (int64_t i = 1; i < attempts && d < w->c->backoff_max_ms; i++)
        d *= 2;
    if (d > w->c->backoff_max_ms)
        d = w->c->backoff_max_ms;
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return d - (int64_t)(w->rng % (uint64_t)(d / 2 + 1));
}

/* ---- acknowledging ---- */

static void ignore(void *arg, redisReply *r)
{
    (void)arg, (void)r;
}

static void acked(void *arg, redisReply *r)
{
    struct entry *e = arg;
    if (e->w->freeing)
        return;
    if (!r)
        park(e, S_ACK);
    else
        release(e); /* an error (NOGROUP: Redis lost the group) leaves nothing to ack */
}

static void ack(struct entry *e)
{
    struct worker *w = e->w;
    const char *argv[] = {"XACK", w->c->stream, w->c->group, e->sid};
    if (rlink_cmdv(w->cmd, 4, argv, acked, e) < 0) {
        park(e, S_ACK);
        return;
    }
    e->state = E_ACKING;
    const char *del[] = {"XDEL", w->c->stream, e->sid};
    if (w->c->delete_delivered)
        rlink_cmdv(w->cmd, 3, del, ignore, NULL);
}

/* ---- dead letters ---- */

static void dead_written(void *arg, redisReply *r)
{
    struct entry *e = arg;
    struct worker *w = e->w;
    if (w->freeing)
        return;
    if (!r) {
        park(e, S_DEAD);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        LOG(CHATD_LOG_ERROR, "entry %s: cannot add it to %s (%s): tried again later", e->sid,
            w->c->dead_stream, r->str);
        wait_then(e, w->c->backoff_max_ms, S_DEAD);
        return;
    }
    w->st.dead++;
    LOG(CHATD_LOG_WARN,
        "notification %s (entry %s) for user %s dead after %lld attempts: %s (in %s as %s)",
        e->id ? e->id : "?", e->sid, e->user_id ? e->user_id : "?", (long long)e->attempts, e->why,
        w->c->dead_stream, r->type == REDIS_REPLY_STRING ? r->str : "?");
    ack(e);
}

static void dead(struct entry *e)
{
    struct worker *w = e->w;
    size_t n = e->nf + 14;
    const char **argv = malloc(n * sizeof *argv);
    size_t *lens = malloc(n * sizeof *lens);
    char maxlen[24], attempts[24];
    snprintf(maxlen, sizeof maxlen, "%lld", (long long)w->c->max_length);
    snprintf(attempts, sizeof attempts, "%lld", (long long)e->attempts);
    const char *head[] = {"XADD", w->c->dead_stream, "MAXLEN", "~", maxlen, "*"};
    const char *tail[] = {"error", e->why, "attempts", attempts,
                          "entry", e->sid, "consumer", w->c->consumer};
    int rc = -1;
    if (argv && lens) {
        size_t k = 0;
        for (size_t i = 0; i < 6; i++, k++)
            argv[k] = head[i], lens[k] = strlen(head[i]);
        for (size_t i = 0; i < e->nf; i++, k++)
            argv[k] = e->f[i], lens[k] = e->flen[i];
        for (size_t i = 0; i < 8; i++, k++)
            argv[k] = tail[i], lens[k] = strlen(tail[i]);
        rc = rlink_cmd(w->cmd, (int)k, argv, lens, dead_written, e);
    }
    free(argv);
    free(lens);
    if (rc < 0)
        park(e, S_DEAD);
    else
        e->state = E_DEADING;
}

/* ---- delivery ---- */

static void failed(struct entry *e)
{
    struct worker *w = e->w;
    if (e->attempts >= w->c->max_attempts) {
        dead(e);
        return;
    }
    if (log_enabled(CHATD_LOG_DEBUG))
        LOG(CHATD_LOG_DEBUG, "notification %s: attempt %lld failed: %s", e->id,
            (long long)e->attempts, e->why);
    wait_then(e, backoff(w, e->attempts), S_CLAIM);
}

static void posted(void *arg, int delivered, long status, const char *why, uint64_t took_us)
{
    (void)status, (void)took_us;
    struct entry *e = arg;
    struct worker *w = e->w;
    w->posting--;
    if (w->freeing)
        return;
    if (delivered) {
        w->st.delivered++;
        ack(e);
        return;
    }
    w->st.failed++;
    snprintf(e->why, sizeof e->why, "%s", why ? why : "failed");
    if (w->stopping)
        entry_abandon(e);
    else
        failed(e);
}

static void post(struct entry *e)
{
    struct worker *w = e->w;
    e->state = E_POSTING;
    w->posting++;
    if (webhook_post(w->hook, e->id, e->body, e->body_len, posted, e) < 0) {
        w->posting--;
        snprintf(e->why, sizeof e->why, "the request could not be made (out of memory?)");
        failed(e);
    }
}

static void begin(struct entry *e)
{
    if (!e->id || !e->body) {
        snprintf(e->why, sizeof e->why, "malformed entry: no valid id or no body");
        dead(e);
    } else if (e->attempts > e->w->c->max_attempts) {
        snprintf(e->why, sizeof e->why, "delivered %lld times to workers that stopped",
                 (long long)e->attempts - 1);
        dead(e);
    } else {
        post(e);
    }
}

/* ---- counting attempts ---- */

/* XCLAIM before a retry: the delivery count goes up by one (the attempt),
 * and an empty answer says another worker took or acknowledged it. */
static void claimed(void *arg, redisReply *r)
{
    struct entry *e = arg;
    if (e->w->freeing)
        return;
    if (!r) {
        park(e, S_CLAIM);
    } else if (e->w->stopping) {
        entry_abandon(e);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 0) {
        entry_gone(e, "no longer pending before its retry (acknowledged by another "
                      "worker, or trimmed from the stream)");
    } else {
        /* claimed; or an error (NOGROUP: Redis lost the stream): the copy here
         * is the only one left, delivered still */
        e->attempts++;
        post(e);
    }
}

/* XPENDING of one entry taken over: its delivery count, this take included. */
static void counted(void *arg, redisReply *r)
{
    struct entry *e = arg;
    if (e->w->freeing)
        return;
    if (!r) {
        park(e, S_COUNT);
        return;
    }
    if (e->w->stopping) {
        entry_abandon(e);
        return;
    }
    const redisReply *p = r->type == REDIS_REPLY_ARRAY && r->elements ? r->element[0] : NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 0) {
        entry_gone(e, "acknowledged by another worker as it was taken over");
        return;
    }
    e->attempts = 1;
    if (p && p->type == REDIS_REPLY_ARRAY && p->elements == 4 &&
        p->element[3]->type == REDIS_REPLY_INTEGER && p->element[3]->integer > 0)
        e->attempts = p->element[3]->integer;
    begin(e);
}

static void send_step(struct entry *e, int argc, const char **argv, rlink_reply_fn fn, enum estep s,
                      enum estate state)
{
    if (rlink_cmdv(e->w->cmd, argc, argv, fn, e) < 0)
        park(e, s);
    else
        e->state = state;
}

static void step(struct entry *e, enum estep s)
{
    const struct pconf *c = e->w->c;
    switch (s) {
    case S_COUNT: {
        const char *argv[] = {"XPENDING", c->stream, c->group, e->sid, e->sid, "1"};
        send_step(e, 6, argv, counted, s, E_COUNTING);
        break;
    }
    case S_CLAIM: {
        const char *argv[] = {"XCLAIM", c->stream, c->group, c->consumer, "0", e->sid};
        send_step(e, 6, argv, claimed, s, E_CLAIMING);
        break;
    }
    case S_POST:
        post(e);
        break;
    case S_ACK:
        ack(e);
        break;
    case S_DEAD:
        dead(e);
        break;
    }
}

void entry_start(struct entry *e, int64_t attempts)
{
    if (attempts < 0) {
        step(e, S_COUNT);
        return;
    }
    e->attempts = attempts;
    begin(e);
}
