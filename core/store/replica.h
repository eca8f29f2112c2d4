/*
 * Read replicas of a backend (mariadb.replicas): which are fit to read from,
 * kept by a monitor thread that writes a heartbeat row on the primary and
 * reads each replica's copy of it; and the reader threads' connections to
 * them. Store-internal.
 */
#ifndef CHATD_REPLICA_H
#define CHATD_REPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "chatd/plugin.h"

struct settings;
struct db_driver;
struct replica_set;

#define REPLICAS_MAX 32

/* Where a read ran, and why (counted on the loop). */
enum read_served {
    READ_PRIMARY,      /* no replica configured, or the job asked for the primary */
    READ_REPLICA,      /* on a replica, at once */
    READ_REPLICA_WAIT, /* on a replica, after it applied the user's last write */
    READ_NO_REPLICA,   /* on the primary: no replica was fit */
    READ_WAIT_TIMEOUT, /* on the primary: the replica did not apply the write in time */
    READ_REPLICA_LOST, /* on the primary, after the replica failed under the read */
};

/* Start watching the replicas of s->mariadb_replicas through drv (which can
 * reach replicas): NULL with err "" when there are none, or with a reason
 * in err when they cannot be watched. */
struct replica_set *replica_set_start(const struct db_driver *drv, const struct settings *s,
                                      char *err, size_t errlen);
/* Stop the monitor and free the set (the readers are gone). NULL is fine. */
void replica_set_stop(struct replica_set *rs);
/* How many replicas are fit to read from now. Any thread. */
int replica_set_fit(const struct replica_set *rs);

/* One reader thread's connections, one per replica, opened when first used. */
struct replica_conns {
    chatd_db *db[REPLICAS_MAX];
};
void replica_conns_close(struct replica_set *rs, struct replica_conns *c);

/*
 * A connection for a read that must see pos ("" for nothing in particular):
 * the next fit replica's, round robin, once it has applied pos (waiting at
 * most mariadb.replica_wait_ms). NULL: read on the primary, *served says
 * why. *which: the replica, for replica_lost().
 */
chatd_db *replica_pick(struct replica_set *rs, struct replica_conns *c, const char *pos, int *which,
                       enum read_served *served);
/* The replica failed under a read: close the connection and skip the
 * replica until the monitor finds it fit again. */
void replica_lost(struct replica_set *rs, struct replica_conns *c, int which);

#endif
