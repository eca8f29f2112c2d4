/*
 * What store.c and reads.c share: jobs, pools and backends. Store-internal.
 */
#ifndef CHATD_STORE_IMPL_H
#define CHATD_STORE_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "chatd/plugin.h"
#include "hmap.h"
#include "replica.h"

struct settings;

enum pool_kind { POOL_WRITE, POOL_READ, POOL_CPU };

/* The replication position of a write, as long as it may matter. */
#define POS_LEN 64

struct job {
    chatd_job_run run;
    chatd_job_run_batch run_batch; /* a write run with its neighbours, or NULL */
    int grouped;                   /* 1: run by run_batch; 2: its run_batch failed */
    chatd_job_done done;
    void (*post_fn)(void *arg);
    void *arg;
    int status;
    int failed; /* a batch without savepoints: this job failed, the others run again */
    enum pool_kind kind;
    int flags;                     /* the submit's */
    uint64_t key;                  /* store_submit_keyed's, 0 for none */
    struct store_backend *backend; /* NULL for CPU jobs and posts */
    int64_t submit_us, start_us;   /* monotonic: handed to a pool, taken by a worker */
    int64_t user;                  /* on whose behalf (the actor at submit), or 0 */
    /* A write: its commit's position. A read: the position it must see
     * (its user's last write), "" for none. */
    char pos[POS_LEN];
    enum read_served served; /* a read: where it ran */
    struct job *next;
};

struct job_list {
    struct job *head, *tail;
    size_t len;
};

struct pool {
    enum pool_kind kind;
    struct store_backend *backend; /* NULL for the CPU pool */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job_list queue;
    int stopping;
    int n_threads;
    pthread_t *threads;
};

struct store_backend {
    const struct db_driver *drv;
    /* One pool per writer, each with its own queue: jobs of one key go to one
     * writer, so they commit in the order they came. */
    struct pool *write;
    int n_writers;
    struct pool read;
    int write_failing;            /* loop thread: the last write found the store unable to write */
    struct replica_set *replicas; /* NULL: every read on the primary */
    hmap *positions;              /* loop thread: user id -> struct user_pos, their last write */
    int64_t positions_swept_ms;
    struct store_backend *next;
};

/* The settings, for the pools (store.c). */
const struct settings *store_settings(void);
/* Sleep before retry attempt (batch.c). */
void store_backoff(int attempt);

/* batch.c: put a writer's batch in the order it runs in (key_order.h). */
void batch_order(struct job_list *batch);
/* Run it in one transaction, retrying lock conflicts up to retries times;
 * every job's status set. */
void batch_run(chatd_db *db, struct job_list *batch, int retries);
/* The run_batch store_batch_register named for run, or NULL; forget them
 * all. Loop thread. */
chatd_job_run_batch batch_runner(chatd_job_run run);
void batch_runners_clear(void);

/* reads.c: a read job on the connection given, retried as a read may be. */
void reads_run(chatd_db *db, struct job *j);
/* A read job taken by a reader thread: on a replica when one is fit (and has
 * the user's last write), else on the primary, opened on first use. */
void reads_run_routed(struct pool *p, chatd_db **primary, struct replica_conns *rc, struct job *j);
/* Loop thread, at submit: the position a user's read must see. */
void reads_prepare(struct job *j);
/* Loop thread, at completion: remember a write's position for its user, and
 * count where a read ran. */
void reads_completed(struct job *j);
/* Start and stop a backend's replicas and positions. */
int reads_open(struct store_backend *b, char *err, size_t errlen);
void reads_close(struct store_backend *b);

#endif
