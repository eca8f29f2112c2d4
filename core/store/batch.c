/*
 * A writer's batch: its keyed jobs put in key order, then run in one
 * transaction (one commit, one fsync), retried on lock conflicts; the
 * consecutive jobs of a run named by store_batch_register go to their
 * run_batch together.
 */
#include <stdlib.h>
#include <time.h>

#include "db.h"
#include "key_order.h"
#include "log.h"
#include "store.h"
#include "store_impl.h"

static int is_transient(int rc)
{
    return rc == CHATD_EBUSY;
}

/* The jobs from j on (not failed) that run with j in one call of its
 * run_batch: their count, at least 1; *after: the job after the last. */
static size_t group_of(struct job *j, struct job **after)
{
    size_t n = 1;
    struct job *k = j->next;
    while (j->run_batch && k && (k->failed || k->run_batch == j->run_batch)) {
        n += !k->failed;
        k = k->next;
    }
    *after = k;
    return n;
}

/* Run the n jobs from j (failed ones skipped) by their run_batch: 0 with
 * their statuses set, or its error for all of them. */
static int run_group(chatd_db *db, struct job *j, size_t n)
{
    void *local_args[64] = {0};
    int local_status[64];
    void **args = n <= 64 ? local_args : malloc(n * sizeof *args);
    int *status = n <= 64 ? local_status : malloc(n * sizeof *status);
    int rc = args && status ? 0 : CHATD_ENOMEM;
    size_t i = 0;
    for (struct job *k = j; rc == 0 && i < n; k = k->next)
        if (!k->failed)
            args[i++] = k->arg;
    if (rc == 0)
        rc = j->run_batch(db, args, status, n);
    i = 0;
    for (struct job *k = j; rc == 0 && i < n; k = k->next)
        if (!k->failed) {
            k->status = status[i++];
            k->grouped = 1;
        }
    if (args != local_args)
        free(args);
    if (status != local_status)
        free(status);
    return rc;
}

/* A group whose run_batch failed runs again job by job. */
static void ungroup(struct job *j, struct job *after)
{
    for (; j != after; j = j->next) {
        j->run_batch = NULL;
        j->grouped = 2;
    }
}

/* One attempt at a batch in one transaction, which one commit (one fsync)
 * makes durable; 0, or why it failed. Without savepoints: a job that fails
 * takes the transaction back with it, and the batch runs again without it
 * (its status stands), as many round trips fewer per job as a savepoint costs. */
static int batch_once_plain(chatd_db *db, struct job_list *batch)
{
    const struct db_driver *drv = db->drv;
    for (;;) {
        int left = 0;
        for (struct job *j = batch->head; j; j = j->next)
            left += !j->failed;
        if (!left)
            return 0; /* every job failed: nothing to write */
        int rc = drv->begin(db, 1), again = 0;
        struct job *failed = NULL, *after;
        for (struct job *j = batch->head; rc == 0 && !failed && !again && j; j = after) {
            if (j->failed) {
                after = j->next;
                continue;
            }
            size_t n = group_of(j, &after);
            if (n > 1) {
                /* a job the group fails has written nothing: no rollback */
                if ((rc = run_group(db, j, n)) < 0 && !is_transient(rc)) {
                    ungroup(j, after);
                    rc = 0, again = 1;
                }
                continue;
            }
            after = j->next;
            j->status = j->run(db, j->arg);
            if (is_transient(j->status))
                rc = j->status;
            else if (j->status < 0)
                failed = j;
        }
        if (rc == 0 && !failed && !again) {
            if ((rc = drv->commit(db)) < 0)
                drv->rollback(db);
            return rc;
        }
        drv->rollback(db);
        if (rc < 0)
            return rc;
        if (failed)
            failed->failed = 1;
    }
}

/* The same with each job in its own savepoint: one job's failure rolls back
 * only its own work. */
static int batch_once(chatd_db *db, struct job_list *batch)
{
    const struct db_driver *drv = db->drv;
    if (drv->no_savepoints)
        return batch_once_plain(db, batch);
    int rc = drv->begin(db, 1);
    struct job *after;
    for (struct job *j = batch->head; rc == 0 && j; j = after) {
        if ((rc = drv->exec(db, "SAVEPOINT job")) < 0)
            break;
        size_t n = group_of(j, &after);
        if (n > 1) {
            if ((rc = run_group(db, j, n)) < 0 && !is_transient(rc)) {
                ungroup(j, after); /* taken back, and run again job by job */
                after = j;
                rc = drv->exec(db, "ROLLBACK TO SAVEPOINT job");
            }
            if (rc == 0)
                rc = drv->exec(db, "RELEASE SAVEPOINT job");
            continue;
        }
        after = j->next;
        j->status = j->run(db, j->arg);
        if (is_transient(j->status)) {
            rc = j->status;
            break;
        }
        if (j->status < 0)
            rc = drv->exec(db, "ROLLBACK TO SAVEPOINT job");
        if (rc == 0)
            rc = drv->exec(db, "RELEASE SAVEPOINT job");
    }
    if (rc == 0)
        rc = drv->commit(db);
    if (rc < 0)
        drv->rollback(db);
    return rc;
}

void store_backoff(int attempt)
{
    struct timespec ts = {0, (long)(1000000L << (attempt < 6 ? attempt : 6))};
    nanosleep(&ts, NULL);
}

/*
 * Run a batch of write jobs, retrying lock conflicts. With several writers
 * (MariaDB) two batches can lock rows in opposite orders and deadlock again
 * and again: after two conflicts the batch is split and each job commits
 * on its own, which one conflict cannot block for long.
 */
void batch_run(chatd_db *db, struct job_list *batch, int retries)
{
    for (int attempt = 0;; attempt++) {
        int rc = batch_once(db, batch);
        if (rc == 0)
            return;
        if (is_transient(rc) && batch->len > 1 && attempt >= 1) {
            for (struct job *j = batch->head; j;) {
                struct job *next = j->next;
                struct job_list one = {j, j, 1};
                j->next = NULL;
                batch_run(db, &one, retries);
                j->next = next;
                j = next;
            }
            return;
        }
        if (!is_transient(rc) || attempt >= retries) {
            /* Nothing of the batch was written: say so to every job. */
            for (struct job *j = batch->head; j; j = j->next)
                j->status = CHATD_EUNAVAIL;
            log_warn("storage: a batch of %zu jobs failed (%d)", batch->len, rc);
            return;
        }
        store_backoff(attempt);
    }
}

/* Run the batch's keyed jobs in key order (key_order.h). */
void batch_order(struct job_list *batch)
{
    struct key_item local[256]; /* storage.batch_max's default fits: no malloc */
    struct key_item *v = batch->len <= 256 ? local : malloc(batch->len * sizeof *v);
    if (batch->len < 2 || !v)
        return; /* unordered: correct, only more likely to conflict */
    size_t n = 0;
    for (struct job *j = batch->head; j; j = j->next)
        v[n++] = (struct key_item){j->key, j, (j->flags & CHATD_JOB_UNORDERED) != 0};
    key_order(v, n);
    for (size_t i = 0; i < n; i++) {
        struct job *j = v[i].item;
        j->next = i + 1 < n ? v[i + 1].item : NULL;
    }
    batch->head = v[0].item;
    batch->tail = v[n - 1].item;
    if (v != local)
        free(v);
}

/* Which runs may run together (store_batch_register); loop thread. */
static struct {
    chatd_job_run run;
    chatd_job_run_batch run_batch;
} batchable[16];
static size_t n_batchable;

int store_batch_register(chatd_job_run run, chatd_job_run_batch run_batch)
{
    if (!run || !run_batch)
        return CHATD_EINVAL;
    for (size_t i = 0; i < n_batchable; i++)
        if (batchable[i].run == run)
            return batchable[i].run_batch == run_batch ? 0 : CHATD_EINVAL;
    if (n_batchable == sizeof batchable / sizeof batchable[0])
        return CHATD_ENOMEM;
    batchable[n_batchable].run = run;
    batchable[n_batchable++].run_batch = run_batch;
    return 0;
}

chatd_job_run_batch batch_runner(chatd_job_run run)
{
    for (size_t i = 0; i < n_batchable; i++)
        if (batchable[i].run == run)
            return batchable[i].run_batch;
    return NULL;
}

void batch_runners_clear(void)
{
    n_batchable = 0;
}
