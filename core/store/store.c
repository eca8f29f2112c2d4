#include "store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "store_impl.h"

static struct {
    struct event_base *base;
    const struct settings *s;
    const char *sql_dir;
    struct event *wake;
    pthread_mutex_t lock; /* guards done */
    struct job_list done;
    struct pool cpu;
    struct store_backend *backends;
    long in_flight; /* loop thread only */
} st = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void list_push(struct job_list *l, struct job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->len++;
}

static struct job *list_pop(struct job_list *l)
{
    struct job *j = l->head;
    if (j) {
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
        l->len--;
    }
    return j;
}

/* Hand finished jobs to the loop; one wake-up covers a whole batch. */
static void complete(struct job_list *batch)
{
    if (!batch->head)
        return;
    pthread_mutex_lock(&st.lock);
    int was_empty = st.done.head == NULL;
    if (st.done.tail)
        st.done.tail->next = batch->head;
    else
        st.done.head = batch->head;
    st.done.tail = batch->tail;
    st.done.len += batch->len;
    pthread_mutex_unlock(&st.lock);
    if (was_empty)
        event_active(st.wake, EV_READ, 0);
}

/* How long a job waited for a worker, and took until its answer was due. */
static void observe(const struct job *j, int64_t now_us)
{
    static const char *const waited[] = {"store_write_wait", "store_read_wait", "store_cpu_wait"};
    static const char *const total[] = {"store_write", "store_read", "store_cpu"};
    metrics_observe_us(waited[j->kind], (uint64_t)(j->start_us - j->submit_us));
    metrics_observe_us(total[j->kind], (uint64_t)(now_us - j->submit_us));
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    pthread_mutex_lock(&st.lock);
    struct job *j = st.done.head;
    st.done.head = st.done.tail = NULL;
    st.done.len = 0;
    pthread_mutex_unlock(&st.lock);
    int64_t now_us = clock_now_us();
    while (j) {
        struct job *next = j->next;
        if (j->post_fn) {
            j->post_fn(j->arg);
        } else {
            observe(j, now_us);
            /* A store that cannot write (read-only, disk full) keeps answering
             * reads: remember it, so /healthz can tell. */
            if (j->kind == POOL_WRITE && j->status == CHATD_EUNAVAIL)
                j->backend->write_failing = 1;
            st.in_flight--;
            METRICS_ADD("jobs_completed", 1);
            if (j->grouped == 1)
                METRICS_ADD("jobs_batched", 1);
            else if (j->grouped == 2)
                METRICS_ADD("jobs_batch_failed", 1);
            reads_completed(j);
            /* What done() submits is on behalf of the same user. */
            int64_t before = actor_set(j->user);
            if (j->done)
                j->done(j->arg, j->status);
            actor_set(before);
        }
        free(j);
        j = next;
    }
}

/* Take the next jobs: a whole batch for the writer, one job otherwise. */
static int pool_take(struct pool *p, struct job_list *out)
{
    size_t max = p->kind == POOL_WRITE ? (size_t)st.s->storage_batch_max : 1;
    pthread_mutex_lock(&p->lock);
    while (!p->queue.head && !p->stopping)
        pthread_cond_wait(&p->cond, &p->lock);
    if (!p->queue.head) {
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    if (p->kind == POOL_WRITE && st.s->storage_batch_wait_us > 0 && p->queue.len < max &&
        !p->stopping) {
        /* Let concurrent writers join this commit, for at most batch_wait_us. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = until.tv_nsec + st.s->storage_batch_wait_us * 1000L;
        until.tv_sec += ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        while (p->queue.len < max && !p->stopping &&
               pthread_cond_timedwait(&p->cond, &p->lock, &until) == 0)
            ;
    }
    *out = (struct job_list){0};
    while (out->len < max && p->queue.head)
        list_push(out, list_pop(&p->queue));
    pthread_mutex_unlock(&p->lock);
    if (p->kind == POOL_WRITE)
        batch_order(out);
    int64_t now_us = clock_now_us();
    for (struct job *j = out->head; j; j = j->next)
        j->start_us = now_us;
    return 1;
}

/* A write batch's commit position, for its users' reads on replicas. */
static void note_positions(chatd_db *db, struct job_list *batch)
{
    char pos[POS_LEN] = "";
    if (db->drv->commit_pos)
        db->drv->commit_pos(db, pos, sizeof pos);
    for (struct job *j = batch->head; pos[0] && j; j = j->next)
        memcpy(j->pos, pos, sizeof pos);
}

static void *pool_main(void *arg)
{
    struct pool *p = arg;
    chatd_db *db = NULL;
    struct replica_conns replicas = {{0}};
    char err[256] = "";
    struct job_list batch;
    while (pool_take(p, &batch)) {
        if (p->kind == POOL_READ) { /* opens the primary only when it reads there */
            reads_run_routed(p, &db, &replicas, batch.head);
            complete(&batch);
            continue;
        }
        if (p->kind != POOL_CPU && !db && p->backend->drv->open(st.s, &db, err, sizeof err) < 0) {
            log_error("storage: %s", err);
            db = NULL;
            for (struct job *j = batch.head; j; j = j->next)
                j->status = CHATD_EUNAVAIL;
            complete(&batch);
            continue;
        }
        if (p->kind == POOL_WRITE) {
            batch_run(db, &batch, (int)st.s->storage_retries);
            metrics_observe_batch(batch.len);
            if (p->backend->replicas)
                note_positions(db, &batch);
        } else {
            batch.head->status = batch.head->run(NULL, batch.head->arg);
        }
        complete(&batch);
    }
    if (db)
        db->drv->close(db);
    if (p->backend)
        replica_conns_close(p->backend->replicas, &replicas);
    return NULL;
}

static int pool_start(struct pool *p, enum pool_kind kind, struct store_backend *b, int n)
{
    p->kind = kind;
    p->backend = b;
    p->stopping = 0; /* the CPU pool outlives a shutdown: store_init starts it again */
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (!(p->threads = calloc((size_t)n, sizeof *p->threads)))
        return CHATD_ENOMEM;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0)
            return CHATD_ENOMEM;
        p->n_threads++;
    }
    return 0;
}

static void pool_stop(struct pool *p)
{
    if (!p->threads)
        return; /* stopped already (store_shutdown, then backend_free) */
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->n_threads = 0;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
}

int store_init(struct event_base *base, const struct settings *s, const char *sql_dir)
{
    st.base = base;
    st.s = s;
    st.sql_dir = sql_dir;
    st.wake = event_new(base, -1, 0, on_wake, NULL);
    if (!st.wake)
        return CHATD_ENOMEM;
    return pool_start(&st.cpu, POOL_CPU, NULL, (int)s->storage_cpu_workers);
}

/* Stop a backend's pools (after their queues drain) and free it. */
/* Join b's workers: nothing of b runs on another thread after this. */
static void backend_stop(struct store_backend *b)
{
    for (int i = 0; i < b->n_writers; i++)
        pool_stop(&b->write[i]);
    pool_stop(&b->read);
}

static void backend_free(struct store_backend *b)
{
    backend_stop(b);
    reads_close(b);
    free(b->write);
    free(b);
}

struct store_backend *store_backend_open(const char *name, char *err, size_t errlen)
{
    for (struct store_backend *b = st.backends; b; b = b->next)
        if (strcmp(b->drv->name, name) == 0)
            return b;
    const struct db_driver *drv = db_driver_find(name);
    if (!drv) {
        snprintf(err, errlen, "unknown storage backend '%s'", name);
        return NULL;
    }
    if (db_migrate(drv, st.s, st.sql_dir, err, errlen) < 0)
        return NULL;
    struct store_backend *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->drv = drv;
    if (reads_open(b, err, errlen) < 0) {
        reads_close(b);
        free(b);
        return NULL;
    }
    int writers = drv->max_writers ? drv->max_writers : (int)st.s->mariadb_writers;
    int rc = (b->write = calloc((size_t)writers, sizeof *b->write)) ? 0 : CHATD_ENOMEM;
    for (int i = 0; rc == 0 && i < writers; i++, b->n_writers++)
        rc = pool_start(&b->write[i], POOL_WRITE, b, 1);
    if (rc == 0)
        rc = pool_start(&b->read, POOL_READ, b, (int)st.s->storage_readers);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start storage threads");
        backend_free(b);
        return NULL;
    }
    b->next = st.backends;
    st.backends = b;
    return b;
}

static void pool_push(struct pool *p, struct job *j)
{
    pthread_mutex_lock(&p->lock);
    list_push(&p->queue, j);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static size_t pool_len(struct pool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->queue.len;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* The writer for a job: the key's, or the one with the shortest queue. */
static struct pool *writer_for(struct store_backend *b, uint64_t key)
{
    if (key)
        return &b->write[key % (uint64_t)b->n_writers];
    struct pool *best = &b->write[0];
    size_t best_len = b->n_writers > 1 ? pool_len(best) : 0;
    for (int i = 1; i < b->n_writers && best_len; i++) {
        size_t len = pool_len(&b->write[i]);
        if (len < best_len)
            best = &b->write[i], best_len = len;
    }
    return best;
}

int store_submit(struct store_backend *b, int flags, chatd_job_run run, chatd_job_done done,
                 void *arg)
{
    return store_submit_keyed(b, flags, 0, run, done, arg);
}

int store_submit_keyed(struct store_backend *b, int flags, uint64_t key, chatd_job_run run,
                       chatd_job_done done, void *arg)
{
    if (!run)
        return CHATD_EINVAL;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    j->run = run;
    if (!(flags & (CHATD_JOB_CPU | CHATD_JOB_READ)))
        j->run_batch = batch_runner(run);
    j->done = done;
    j->arg = arg;
    j->key = key;
    j->submit_us = clock_now_us();
    j->backend = flags & CHATD_JOB_CPU ? NULL : b;
    j->kind = flags & CHATD_JOB_CPU ? POOL_CPU : flags & CHATD_JOB_READ ? POOL_READ : POOL_WRITE;
    j->flags = flags;
    j->user = actor_user();
    reads_prepare(j);
    st.in_flight++;
    METRICS_ADD("jobs_submitted", 1);
    if (flags & CHATD_JOB_CPU)
        pool_push(&st.cpu, j);
    else if (!b) {
        free(j);
        st.in_flight--;
        return CHATD_EINVAL;
    } else if (flags & CHATD_JOB_READ)
        pool_push(&b->read, j);
    else
        pool_push(writer_for(b, key), j);
    return 0;
}

int store_post(void (*fn)(void *arg), void *arg)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    j->post_fn = fn;
    j->arg = arg;
    struct job_list one = {j, j, 1};
    complete(&one);
    return 0;
}

int store_run_sync(struct store_backend *b, chatd_job_run run, void *arg)
{
    chatd_db *db = NULL;
    char err[256] = "";
    int rc = b->drv->open(st.s, &db, err, sizeof err);
    if (rc < 0) {
        log_error("storage: %s", err);
        return rc;
    }
    struct job j = {.run = run, .arg = arg};
    reads_run(db, &j);
    db->drv->close(db);
    return j.status;
}

const struct settings *store_settings(void)
{
    return st.s;
}

const char *store_backend_name(const struct store_backend *b)
{
    return b->drv->name;
}

long store_in_flight(void)
{
    return st.in_flight;
}

long store_queue_depth(void)
{
    size_t n = st.cpu.threads ? pool_len(&st.cpu) : 0;
    for (struct store_backend *b = st.backends; b; b = b->next) {
        n += pool_len(&b->read);
        for (int i = 0; i < b->n_writers; i++)
            n += pool_len(&b->write[i]);
    }
    return (long)n;
}

struct store_backend *store_backend_next(struct store_backend *b)
{
    return b ? b->next : st.backends;
}

int store_backend_write_failing(const struct store_backend *b)
{
    return b->write_failing;
}

void store_backend_write_ok(struct store_backend *b)
{
    b->write_failing = 0;
}

void store_shutdown(void)
{
    batch_runners_clear(); /* the plugins that named them are going */
    for (struct store_backend *b = st.backends; b; b = b->next)
        backend_stop(b);
    if (st.cpu.threads)
        pool_stop(&st.cpu);
    /* Run whatever completed after the loop stopped, so every done() runs
     * once: before the backends go, as completing a job reads its backend. */
    if (st.wake) {
        on_wake(-1, 0, NULL);
        event_free(st.wake);
        st.wake = NULL;
    }
    while (st.backends) {
        struct store_backend *b = st.backends;
        st.backends = b->next;
        backend_free(b);
    }
}
