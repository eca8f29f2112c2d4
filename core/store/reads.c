/*
 * Reads: where a read job runs (a fit replica, or the primary), the position
 * each user's reads must see (their last write's, kept on the loop), and the
 * retries a read may take.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "store_impl.h"

struct user_pos {
    char pos[POS_LEN];
    int64_t at_ms; /* monotonic: when the write completed */
};

void reads_run(chatd_db *db, struct job *j)
{
    const struct db_driver *drv = db->drv;
    int retries = (int)store_settings()->storage_retries;
    for (int attempt = 0;; attempt++) {
        int rc = drv->begin(db, 0);
        j->status = rc; /* a backend that cannot begin fails the job, never passes it */
        if (rc == 0) {
            j->status = rc = j->run(db, j->arg);
            int c = drv->commit(db);
            if (rc >= 0 && c < 0)
                j->status = rc = c;
        }
        if (rc < 0)
            drv->rollback(db);
        /* A read is always safe to run again: once after a lost connection
         * (a server restarted while this one sat idle; begin reconnects). */
        if (rc == CHATD_EUNAVAIL && attempt == 0)
            continue;
        if (rc != CHATD_EBUSY || attempt >= retries) {
            if (rc == CHATD_EBUSY)
                j->status = CHATD_EUNAVAIL;
            return;
        }
        store_backoff(attempt);
    }
}

void reads_run_routed(struct pool *p, chatd_db **primary, struct replica_conns *rc, struct job *j)
{
    struct store_backend *b = p->backend;
    j->served = READ_PRIMARY;
    if (b->replicas && !(j->flags & CHATD_JOB_PRIMARY)) {
        int which = 0;
        chatd_db *db = replica_pick(b->replicas, rc, j->pos, &which, &j->served);
        if (db) {
            reads_run(db, j);
            if (j->status != CHATD_EUNAVAIL && j->status != CHATD_EINTERNAL)
                return;
            /* The replica went away under the read (or cannot run it): the
             * primary runs it again, and nobody sees more than the wait. */
            if (j->status == CHATD_EUNAVAIL)
                replica_lost(b->replicas, rc, which);
            j->served = READ_REPLICA_LOST;
        }
    }
    char err[256];
    if (!*primary && b->drv->open(store_settings(), primary, err, sizeof err) < 0) {
        log_error("storage: %s", err);
        *primary = NULL;
        j->status = CHATD_EUNAVAIL;
        return;
    }
    reads_run(*primary, j);
}

/* "domain-server-seq": whether a is later than b in the same domain (or
 * they cannot be compared: the newer news wins). */
static int pos_later(const char *a, const char *b)
{
    unsigned long long da, sa, na, db, sb, nb;
    if (sscanf(a, "%llu-%llu-%llu", &da, &sa, &na) != 3 ||
        sscanf(b, "%llu-%llu-%llu", &db, &sb, &nb) != 3 || da != db)
        return 1;
    return na > nb;
}

void reads_prepare(struct job *j)
{
    struct store_backend *b = j->backend;
    j->pos[0] = '\0';
    if (!b || !b->replicas || !j->user || j->kind != POOL_READ)
        return;
    struct user_pos *u = hmap_get_id(b->positions, (uint64_t)j->user);
    if (u)
        memcpy(j->pos, u->pos, POS_LEN);
}

static int expired(uint64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key;
    struct user_pos *u = value;
    if (u->at_ms > *(int64_t *)arg)
        return 0;
    free(u);
    return 1;
}

/* A write older than the lag allowed (twice, and a second) is on every fit
 * replica: its user's reads need not wait for it any more. */
static void note_write(struct store_backend *b, int64_t user, const char *pos)
{
    int64_t now = clock_now_ms();
    struct user_pos *u = hmap_get_id(b->positions, (uint64_t)user);
    if (!u && (u = calloc(1, sizeof *u)) && hmap_put_id(b->positions, (uint64_t)user, u) < 0) {
        free(u);
        u = NULL;
    }
    if (u && (!u->pos[0] || pos_later(pos, u->pos))) {
        snprintf(u->pos, sizeof u->pos, "%s", pos);
        u->at_ms = now;
    }
    if (now - b->positions_swept_ms >= 1000) {
        int64_t before = now - 2 * store_settings()->mariadb_max_replica_lag_ms - 1000;
        b->positions_swept_ms = now;
        hmap_sweep(b->positions, expired, &before);
    }
}

void reads_completed(struct job *j)
{
    static const char *const counters[] = {
        [READ_PRIMARY] = "store_reads_primary",
        [READ_REPLICA] = "store_reads_replica",
        [READ_REPLICA_WAIT] = "store_reads_replica_waited",
        [READ_NO_REPLICA] = "store_reads_no_replica",
        [READ_WAIT_TIMEOUT] = "store_reads_wait_timeout",
        [READ_REPLICA_LOST] = "store_reads_replica_lost",
    };
    struct store_backend *b = j->backend;
    if (!b || !b->replicas)
        return;
    if (j->kind == POOL_WRITE && j->user && j->pos[0] && j->status >= 0)
        note_write(b, j->user, j->pos);
    if (j->kind != POOL_READ)
        return;
    int on_replica = j->served == READ_REPLICA || j->served == READ_REPLICA_WAIT;
    metrics_count(counters[j->served], 1);
    metrics_observe_us(on_replica ? "store_read_replica" : "store_read_primary",
                       (uint64_t)(clock_now_us() - j->submit_us));
    metrics_gauge("store_replicas_fit", replica_set_fit(b->replicas));
}

int reads_open(struct store_backend *b, char *err, size_t errlen)
{
    b->replicas = replica_set_start(b->drv, store_settings(), err, errlen);
    if (!b->replicas)
        return err[0] ? CHATD_EUNAVAIL : 0;
    if (!(b->positions = hmap_new(0))) {
        snprintf(err, errlen, "out of memory");
        return CHATD_ENOMEM;
    }
    return 0;
}

static int drop(uint64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key, (void)arg;
    free(value);
    return 1;
}

void reads_close(struct store_backend *b)
{
    replica_set_stop(b->replicas);
    b->replicas = NULL;
    if (b->positions) {
        hmap_sweep(b->positions, drop, NULL);
        hmap_free(b->positions);
        b->positions = NULL;
    }
}
