/*
 * The notifications this node delivers. Each waits in a heap by the time it
 * is due; at most max_in_flight are with the backend at once. A delivered
 * one is deleted from the outbox; a failed one is tried again after an
 * exponential backoff with jitter, until max_attempts, and then dead-
 * lettered: kept in the outbox with why, logged and counted. More than
 * max_pending held: the oldest are dead-lettered ("outbox full"), never
 * dropped unseen. The row changes are written in batches, one write job at a
 * time, and the leases of the rows held are renewed every lease_ms / 3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"

enum op_kind { OP_DELETE, OP_RETRY, OP_DEAD };

struct op {
    enum op_kind kind;
    char id[PUSH_ID_MAX];
    int attempts;
    int64_t next_at;
    char why[128];
};

struct ops {
    struct op *v;
    size_t n, cap;
};

struct queue {
    struct pplug *pp;
    struct push_item **heap; /* not in flight, by next_at */
    size_t n, cap;
    struct push_item *oldest, *newest;
    size_t held, in_flight;
    int64_t timer_at;   /* a wake-up is pending for then (0: none) */
    struct ops pending; /* row changes not yet handed to a job */
    int writing;        /* a job writes a batch */
    int flush_armed;    /* a flush is scheduled */
    int pumping;        /* pump() is under way: a send answered at once returns to it */
    uint64_t rng;
};

/* ---- items ---- */

struct push_item *push_item_new(const char *id, int64_t user_id, char *body, int64_t created_at)
{
    struct push_item *it = calloc(1, sizeof *it);
    if (!it) {
        free(body);
        return NULL;
    }
    snprintf(it->id, sizeof it->id, "%s", id);
    it->user_id = user_id;
    it->body = body;
    it->len = strlen(body);
    it->created_at = it->next_at = created_at;
    it->heap_at = SIZE_MAX;
    return it;
}

void push_item_free(struct push_item *it)
{
    if (it) {
        free(it->body);
        free(it);
    }
}

/* ---- the heap ---- */

static int earlier(const struct push_item *a, const struct push_item *b)
{
    return a->next_at < b->next_at || (a->next_at == b->next_at && a->created_at < b->created_at);
}

static void heap_set(struct queue *q, size_t i, struct push_item *it)
{
    q->heap[i] = it;
    it->heap_at = i;
}

static void heap_up(struct queue *q, size_t i)
{
    struct push_item *it = q->heap[i];
    while (i > 0 && earlier(it, q->heap[(i - 1) / 2])) {
        heap_set(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(q, i, it);
}

static void heap_down(struct queue *q, size_t i)
{
    struct push_item *it = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && earlier(q->heap[c + 1], q->heap[c]))
            c++;
        if (!earlier(q->heap[c], it))
            break;
        heap_set(q, i, q->heap[c]);
        i = c;
    }
    heap_set(q, i, it);
}

static int heap_push(struct queue *q, struct push_item *it)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct push_item **h = realloc(q->heap, cap * sizeof *h);
        if (!h)
            return CHATD_ENOMEM;
        q->heap = h;
        q->cap = cap;
    }
    heap_set(q, q->n++, it);
    heap_up(q, q->n - 1);
    return 0;
}

static void heap_remove(struct queue *q, struct push_item *it)
{
    size_t i = it->heap_at;
    if (i == SIZE_MAX)
        return;
    it->heap_at = SIZE_MAX;
    struct push_item *last = q->heap[--q->n];
    if (i == q->n)
        return;
    heap_set(q, i, last);
    heap_up(q, i);
    heap_down(q, last->heap_at);
}

/* ---- the list of items held, oldest first ---- */

/* The outbox depth an operator watches: what this node holds. */
static void held_changed(struct queue *q)
{
    q->pp->host->gauge(q->pp->p, "push_outbox_held", (int64_t)q->held);
}

static void link_newest(struct queue *q, struct push_item *it)
{
    it->older = q->newest;
    it->newer = NULL;
    if (q->newest)
        q->newest->newer = it;
    else
        q->oldest = it;
    q->newest = it;
    q->held++;
    held_changed(q);
}

static void unlink_item(struct queue *q, struct push_item *it)
{
    if (it->older)
        it->older->newer = it->newer;
    else
        q->oldest = it->newer;
    if (it->newer)
        it->newer->older = it->older;
    else
        q->newest = it->older;
    it->older = it->newer = NULL;
    q->held--;
    held_changed(q);
}

/* ---- row changes, in batches ---- */

static void flush(void *arg);

static void op_add(struct queue *q, enum op_kind kind, const struct push_item *it, const char *why)
{
    const chatd_host *h = q->pp->host;
    if (!q->pp->durable)
        return;
    struct ops *o = &q->pending;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        struct op *v = realloc(o->v, cap * sizeof *v);
        if (!v) {
            h->log(q->pp->p, CHATD_LOG_ERROR, "out of memory: outbox row %s not updated", it->id);
            return; /* the row stays as it was: delivered again later, at worst */
        }
        o->v = v;
        o->cap = cap;
    }
    struct op *op = &o->v[o->n++];
    *op = (struct op){.kind = kind, .attempts = it->attempts, .next_at = it->next_at};
    snprintf(op->id, sizeof op->id, "%s", it->id);
    snprintf(op->why, sizeof op->why, "%s", why ? why : "");
    if (!q->flush_armed && !q->writing && h->after(q->pp->p, 0, flush, q) == 0)
        q->flush_armed = 1;
}

struct ops_job {
    struct queue *q;
    struct ops ops;
};

static int ops_run(chatd_db *db, void *arg)
{
    struct ops_job *j = arg;
    const chatd_host *h = j->q->pp->host;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < j->ops.n; i++) {
        const struct op *op = &j->ops.v[i];
        if (op->kind == OP_DELETE)
            rc = util_exec(h, db, "DELETE FROM push_outbox WHERE id = ?", "s", op->id);
        else if (op->kind == OP_RETRY)
            rc = util_exec(h, db,
                           "UPDATE push_outbox SET attempts = ?, next_at = ?, last_error = ?"
                           " WHERE id = ?",
                           "iiss", (int64_t)op->attempts, op->next_at, op->why, op->id);
        else
            rc = util_exec(h, db,
                           "UPDATE push_outbox SET dead = 1, attempts = ?, last_error = ?"
                           " WHERE id = ?",
                           "iss", (int64_t)op->attempts, op->why, op->id);
    }
    return rc;
}

static void ops_done(void *arg, int status)
{
    struct ops_job *j = arg;
    struct queue *q = j->q;
    q->writing = 0;
    if (status < 0)
        q->pp->host->log(q->pp->p, CHATD_LOG_WARN,
                         "%zu outbox row changes not written (storage unavailable): "
                         "those notifications may be delivered again",
                         j->ops.n);
    free(j->ops.v);
    free(j);
    if (q->pending.n && !q->flush_armed && q->pp->host->after(q->pp->p, 0, flush, q) == 0)
        q->flush_armed = 1;
}

static void flush(void *arg)
{
    struct queue *q = arg;
    q->flush_armed = 0;
    if (q->writing || !q->pending.n)
        return;
    struct ops_job *j = malloc(sizeof *j);
    if (!j)
        return;
    *j = (struct ops_job){q, q->pending};
    q->pending = (struct ops){0};
    q->writing = 1;
    if (q->pp->host->submit(q->pp->p, CHATD_JOB_WRITE | CHATD_JOB_UNORDERED, ops_run, ops_done, j) <
        0)
        ops_done(j, CHATD_EINTERNAL);
}

/* ---- delivery ---- */

static void pump(struct queue *q);

static void on_timer(void *arg)
{
    struct queue *q = arg;
    q->timer_at = 0;
    pump(q);
}

static void wake_at(struct queue *q, int64_t at)
{
    int64_t now = q->pp->host->now_ms();
    if (q->timer_at && q->timer_at <= at)
        return;
    if (q->pp->host->after(q->pp->p, at > now ? at - now : 0, on_timer, q) == 0)
        q->timer_at = at;
}

static uint64_t next_random(struct queue *q)
{
    q->rng ^= q->rng << 13;
    q->rng ^= q->rng >> 7;
    q->rng ^= q->rng << 17;
    return q->rng;
}

/* backoff_ms doubling per attempt up to backoff_max_ms, a random half of it
 * taken off, so that retries of many notifications spread out. */
static int64_t backoff(struct queue *q, int attempts)
{
    const struct push_settings *s = &q->pp->set;
    int64_t d = s->backoff_ms;
    for (int i = 1; i < attempts && d < s->backoff_max_ms; i++)
        d *= 2;
    if (d > s->backoff_max_ms)
        d = s->backoff_max_ms;
    return d - (int64_t)(next_random(q) % (uint64_t)(d / 2 + 1));
}

static void forget(struct queue *q, struct push_item *it)
{
    heap_remove(q, it);
    unlink_item(q, it);
    push_item_free(it);
}

static void dead_letter(struct queue *q, struct push_item *it, const char *why)
{
    const chatd_host *h = q->pp->host;
    op_add(q, OP_DEAD, it, why);
    h->count(q->pp->p, "push_dead", 1);
    h->log(q->pp->p, CHATD_LOG_WARN, "notification %s for user %lld dead after %d attempts: %s",
           it->id, (long long)it->user_id, it->attempts, why);
    forget(q, it);
}

static void sent(struct push_item *it, enum push_result r, const char *why, void *arg)
{
    struct queue *q = arg;
    const chatd_host *h = q->pp->host;
    it->in_flight = 0;
    q->in_flight--;
    if (q->pp->closing)
        return;
    if (r == PUSH_DELIVERED) {
        op_add(q, OP_DELETE, it, NULL);
        h->count(q->pp->p, "push_sent", 1);
        forget(q, it);
    } else if (it->attempts >= q->pp->set.max_attempts) {
        dead_letter(q, it, why ? why : "failed");
    } else {
        it->next_at = h->now_ms() + backoff(q, it->attempts);
        op_add(q, OP_RETRY, it, why);
        h->count(q->pp->p, "push_retried", 1);
        if (heap_push(q, it) < 0)
            dead_letter(q, it, "out of memory");
    }
    pump(q);
}

/* Hand the due notifications to the backend, up to max_in_flight. A backend
 * may answer a send at once (the log backend always does, the others when
 * they cannot send): that answer's pump() returns here, to this loop, rather
 * than run one level deeper for each notification due (thousands, after an
 * outage: the stack would not hold them). */
static void pump(struct queue *q)
{
    if (q->pumping)
        return;
    q->pumping = 1;
    const chatd_host *h = q->pp->host;
    int64_t now = h->now_ms();
    while (!q->pp->closing && q->n && q->in_flight < (size_t)q->pp->set.max_in_flight &&
           q->heap[0]->next_at <= now) {
        struct push_item *it = q->heap[0];
        heap_remove(q, it);
        it->in_flight = 1;
        it->attempts++;
        q->in_flight++;
        if (q->pp->backend->send(q->pp->backend_state, it, sent, q) < 0)
            sent(it, PUSH_RETRY, "the backend refused it", q);
    }
    q->pumping = 0;
    if (q->n && q->in_flight < (size_t)q->pp->set.max_in_flight)
        wake_at(q, q->heap[0]->next_at);
}

void queue_add(struct queue *q, struct push_item *it)
{
    const chatd_host *h = q->pp->host;
    link_newest(q, it);
    h->count(q->pp->p, "push_queued", 1);
    if (heap_push(q, it) < 0) {
        dead_letter(q, it, "out of memory");
        return;
    }
    /* Over the bound: the oldest waiting go, kept as dead letters. */
    for (struct push_item *o = q->oldest; o && q->held > (size_t)q->pp->set.max_pending;) {
        struct push_item *next = o->newer;
        if (!o->in_flight)
            dead_letter(q, o, "outbox full (max_pending)");
        o = next;
    }
    pump(q);
}

size_t queue_held(const struct queue *q)
{
    return q->held;
}

/* ---- leases ---- */

struct lease_job {
    struct queue *q;
    int64_t until;
};

static int lease_run(chatd_db *db, void *arg)
{
    struct lease_job *j = arg;
    const chatd_host *h = j->q->pp->host;
    return util_exec(h, db, "UPDATE push_outbox SET lease_until = ? WHERE owner = ? AND dead = 0",
                     "is", j->until, j->q->pp->node);
}

static void renew(void *arg);

static void lease_done(void *arg, int status)
{
    struct lease_job *j = arg;
    (void)status; /* a renewal that failed is tried again at the next */
    struct queue *q = j->q;
    free(j);
    if (!q->pp->closing)
        q->pp->host->after(q->pp->p, q->pp->set.lease_ms / 3, renew, q);
}

static void renew(void *arg)
{
    struct queue *q = arg;
    struct lease_job *j = malloc(sizeof *j);
    if (!j)
        return;
    *j = (struct lease_job){q, q->pp->host->now_ms() + q->pp->set.lease_ms};
    if (q->pp->host->submit(q->pp->p, CHATD_JOB_WRITE, lease_run, lease_done, j) < 0)
        lease_done(j, CHATD_EINTERNAL);
}

/* ---- the queue ---- */

struct queue *queue_new(struct pplug *pp)
{
    struct queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->pp = pp;
    if (pp->host->random_bytes(&q->rng, sizeof q->rng) < 0 || !q->rng)
        q->rng = 0x9e3779b97f4a7c15ull;
    if (pp->durable)
        pp->host->after(pp->p, pp->set.lease_ms / 3, renew, q);
    return q;
}

void queue_free(struct queue *q)
{
    if (!q)
        return;
    while (q->oldest) {
        struct push_item *it = q->oldest;
        unlink_item(q, it);
        push_item_free(it);
    }
    free(q->heap);
    free(q->pending.v);
    free(q);
}
