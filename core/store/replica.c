#include "replica.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "config_check.h"
#include "db.h"
#include "log.h"

enum verdict { V_UNKNOWN, V_FIT, V_LAGGING, V_DOWN };

struct replica {
    char host[256];
    int port;
    const char *name;   /* "host:port" as configured, for the log */
    atomic_int fit;     /* 1: reads may go there */
    enum verdict state; /* the monitor's last, for the log */
};

struct replica_set {
    const struct db_driver *drv;
    const struct settings *s;
    int n;
    struct replica r[REPLICAS_MAX];
    atomic_uint next; /* round robin */
    pthread_t monitor;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stopping;
    char node[33];     /* this process's heartbeat row */
    int64_t last_beat; /* monitor thread: the last heartbeat committed on the primary */
};

/* A row not there yet: the replica has not applied this node's first beat. */
#define LAG_NO_ROW (-2)

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A quarter of the lag allowed, within 50 ms .. 1 s: the lag is known to
 * that much. */
static int64_t interval_ms(const struct settings *s)
{
    int64_t ms = s->mariadb_max_replica_lag_ms / 4;
    return ms < 50 ? 50 : ms > 1000 ? 1000 : ms;
}

/* How far the replica's copy of this node's heartbeat is behind the last
 * beat the primary committed (ms), LAG_NO_ROW, or -1 when it cannot be read. */
static int64_t replica_lag(struct replica_set *rs, chatd_db *db)
{
    const struct db_driver *drv = db->drv;
    chatd_stmt *st = db_bind(db, "SELECT ms FROM chatd_heartbeat WHERE node = ?", "s", rs->node);
    if (!st)
        return -1;
    int rc = drv->step(st);
    int64_t ms = rc == CHATD_ROW ? drv->column_int(st, 0) : 0;
    drv->reset(st);
    if (rc != CHATD_ROW)
        return rc == CHATD_DONE ? LAG_NO_ROW : -1;
    return rs->last_beat > ms ? rs->last_beat - ms : 0;
}

static void verdict(struct replica_set *rs, struct replica *r, int64_t lag)
{
    enum verdict v = lag == -1                                 ? V_DOWN
                     : lag == LAG_NO_ROW                       ? V_LAGGING
                     : lag > rs->s->mariadb_max_replica_lag_ms ? V_LAGGING
                                                               : V_FIT;
    int was = atomic_exchange(&r->fit, v == V_FIT);
    if (v == r->state && was == (v == V_FIT))
        return;
    if (v == V_FIT)
        log_info("mariadb replica %s: reads go there (%lld ms behind)", r->name, (long long)lag);
    else if (v == V_DOWN && r->state != V_DOWN)
        log_warn("mariadb replica %s: unreachable: reads skip it", r->name);
    else if (lag == LAG_NO_ROW && r->state != V_LAGGING)
        log_info("mariadb replica %s: has not applied this node's heartbeat yet", r->name);
    else if (lag >= 0 && r->state != V_LAGGING)
        log_warn("mariadb replica %s: %lld ms behind (mariadb.max_replica_lag_ms): reads skip it",
                 r->name, (long long)lag);
    r->state = v;
}

static void measure(struct replica_set *rs, int i, chatd_db **db)
{
    struct replica *r = &rs->r[i];
    char err[256];
    int64_t lag = -1;
    if (!rs->last_beat) /* a lag means something once a beat was committed */
        return;
    if (!*db && rs->drv->open_at(rs->s, r->host, r->port, db, err, sizeof err) < 0)
        *db = NULL;
    if (*db && (lag = replica_lag(rs, *db)) == -1) {
        rs->drv->close(*db);
        *db = NULL;
    }
    verdict(rs, r, lag);
}

/* This node's heartbeat on the primary: its wall clock, into its own row. */
static void beat(struct replica_set *rs, chatd_db **db)
{
    const struct db_driver *drv = rs->drv;
    char err[256];
    if (!*db && drv->open(rs->s, db, err, sizeof err) < 0) {
        *db = NULL;
        return;
    }
    int64_t now = wall_ms();
    int rc = drv->begin(*db, 1);
    if (rc == 0 && !rs->last_beat) /* once: the rows of nodes long gone */
        rc = db_run(*db, "DELETE FROM chatd_heartbeat WHERE ms < ?", "i", now - 3600 * 1000);
    if (rc == 0)
        rc = db_run(*db,
                    "INSERT INTO chatd_heartbeat (node, ms) VALUES (?, ?) "
                    "ON DUPLICATE KEY UPDATE ms = VALUES(ms)",
                    "si", rs->node, now);
    if (rc == 0 && (rc = drv->commit(*db)) == 0) {
        rs->last_beat = now;
        return;
    }
    drv->rollback(*db);
    drv->close(*db);
    *db = NULL;
}

/* Measure each replica against the last beat, then beat again: a replica
 * that keeps up has applied the last beat by the next round. */
static void *monitor_main(void *arg)
{
    struct replica_set *rs = arg;
    chatd_db *primary = NULL, *conn[REPLICAS_MAX] = {0};
    int64_t every = interval_ms(rs->s);
    pthread_mutex_lock(&rs->lock);
    while (!rs->stopping) {
        pthread_mutex_unlock(&rs->lock);
        for (int i = 0; i < rs->n; i++)
            measure(rs, i, &conn[i]);
        beat(rs, &primary);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = until.tv_nsec + (long)(every % 1000) * 1000000L;
        until.tv_sec += (time_t)(every / 1000) + ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        pthread_mutex_lock(&rs->lock);
        while (!rs->stopping && pthread_cond_timedwait(&rs->cond, &rs->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&rs->lock);
    for (int i = 0; i < rs->n; i++)
        if (conn[i])
            rs->drv->close(conn[i]);
    if (primary)
        rs->drv->close(primary);
    return NULL;
}

struct replica_set *replica_set_start(const struct db_driver *drv, const struct settings *s,
                                      char *err, size_t errlen)
{
    err[0] = '\0';
    char *const *list = s->mariadb_replicas;
    if (!list || !list[0] || !drv->open_at)
        return NULL;
    struct replica_set *rs = calloc(1, sizeof *rs);
    unsigned char id[16];
    if (!rs || RAND_bytes(id, sizeof id) != 1) {
        snprintf(err, errlen, "mariadb replicas: out of memory");
        free(rs);
        return NULL;
    }
    rs->drv = drv;
    rs->s = s;
    for (int i = 0; i < (int)sizeof id; i++)
        sprintf(rs->node + 2 * i, "%02x", id[i]);
    for (int i = 0; list[i] && rs->n < REPLICAS_MAX; i++) {
        struct replica *r = &rs->r[rs->n];
        if (config_host_port(list[i], r->host, sizeof r->host, &r->port) < 0)
            continue; /* the configuration's check refused it already */
        r->name = list[i];
        rs->n++;
    }
    pthread_mutex_init(&rs->lock, NULL);
    pthread_cond_init(&rs->cond, NULL);
    if (pthread_create(&rs->monitor, NULL, monitor_main, rs) != 0) {
        snprintf(err, errlen, "mariadb replicas: cannot start the monitor thread");
        free(rs);
        return NULL;
    }
    log_info("mariadb: %d read replica(s), at most %lld ms behind", rs->n,
             (long long)s->mariadb_max_replica_lag_ms);
    return rs;
}

void replica_set_stop(struct replica_set *rs)
{
    if (!rs)
        return;
    pthread_mutex_lock(&rs->lock);
    rs->stopping = 1;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->lock);
    pthread_join(rs->monitor, NULL);
    pthread_mutex_destroy(&rs->lock);
    pthread_cond_destroy(&rs->cond);
    free(rs);
}

int replica_set_fit(const struct replica_set *rs)
{
    int n = 0;
    for (int i = 0; rs && i < rs->n; i++)
        n += atomic_load(&rs->r[i].fit);
    return n;
}

void replica_conns_close(struct replica_set *rs, struct replica_conns *c)
{
    for (int i = 0; rs && i < rs->n; i++)
        if (c->db[i]) {
            rs->drv->close(c->db[i]);
            c->db[i] = NULL;
        }
}

void replica_lost(struct replica_set *rs, struct replica_conns *c, int which)
{
    struct replica *r = &rs->r[which];
    if (c->db[which]) {
        rs->drv->close(c->db[which]);
        c->db[which] = NULL;
    }
    if (atomic_exchange(&r->fit, 0))
        log_warn("mariadb replica %s: failed under a read: reads skip it until it answers again",
                 r->name);
}

chatd_db *replica_pick(struct replica_set *rs, struct replica_conns *c, const char *pos, int *which,
                       enum read_served *served)
{
    *served = READ_NO_REPLICA;
    unsigned k = atomic_fetch_add(&rs->next, 1);
    for (int t = 0; t < rs->n; t++) {
        int i = (int)((k + (unsigned)t) % (unsigned)rs->n);
        struct replica *r = &rs->r[i];
        char err[256];
        if (!atomic_load(&r->fit))
            continue;
        if (!c->db[i] &&
            rs->drv->open_at(rs->s, r->host, r->port, &c->db[i], err, sizeof err) < 0) {
            c->db[i] = NULL;
            replica_lost(rs, c, i);
            continue;
        }
        int rc = *pos ? rs->drv->wait_pos(c->db[i], pos, rs->s->mariadb_replica_wait_ms) : 0;
        if (rc == CHATD_EUNAVAIL) {
            replica_lost(rs, c, i);
            continue;
        }
        if (rc < 0) { /* not applied in time: the primary has it */
            *served = READ_WAIT_TIMEOUT;
            return NULL;
        }
        *which = i;
        *served = *pos ? READ_REPLICA_WAIT : READ_REPLICA;
        return c->db[i];
    }
    return NULL;
}
