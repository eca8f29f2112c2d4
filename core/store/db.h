/*
 * The storage driver API: what a SQL backend implements. Plugins reach it
 * through the host table's db_* calls; the core uses it for transactions and
 * migrations. A chatd_db belongs to one worker thread.
 */
#ifndef CHATD_DB_H
#define CHATD_DB_H

#include <stddef.h>
#include <stdint.h>

#include "chatd/plugin.h"

struct settings;

struct db_driver {
    const char *name; /* also the SQL dialect and the sql/<name>/ folder */
    /* Open a connection; on failure writes a reason into err. */
    int (*open)(const struct settings *s, chatd_db **out, char *err, size_t errlen);
    void (*close)(chatd_db *db);
    /* Run a script of one or more statements without results. */
    int (*exec)(chatd_db *db, const char *sql);
    /* Transaction verbs; write = take the write lock up front. */
    int (*begin)(chatd_db *db, int write);
    int (*commit)(chatd_db *db);
    int (*rollback)(chatd_db *db);
    chatd_stmt *(*prepare)(chatd_db *db, const char *sql);
    int (*bind_int)(chatd_stmt *st, int idx, int64_t v);
    int (*bind_text)(chatd_stmt *st, int idx, const char *s, size_t len);
    int (*bind_blob)(chatd_stmt *st, int idx, const void *b, size_t len);
    int (*bind_null)(chatd_stmt *st, int idx);
    int (*step)(chatd_stmt *st);
    /* step() of a statement without rows, in a write transaction: it may run
     * later, with the next statement or the commit, in its round trip (its
     * error then comes from that); CHATD_DONE. NULL: step() it now. */
    int (*step_later)(chatd_stmt *st);
    int64_t (*column_int)(chatd_stmt *st, int col);
    const char *(*column_text)(chatd_stmt *st, int col, size_t *len);
    int (*column_is_null)(chatd_stmt *st, int col);
    void (*reset)(chatd_stmt *st);
    int64_t (*last_insert_id)(chatd_db *db);
    /* The rows of one multi-row INSERT take consecutive ids, step apart:
     * the step, or 0 when they may not (NULL: never known). Then the id of
     * the first of the last INSERT's rows rows (NULL: last_insert_id is
     * that one, as MariaDB reports it). */
    int64_t (*insert_step)(chatd_db *db);
    int64_t (*first_insert_id)(chatd_db *db, size_t rows);
    int64_t (*changes)(chatd_db *db);
    /* Number of threads that may write at once with this driver (0: as configured). */
    int max_writers;
    /* Savepoints cost a round trip each (a server): a batch's jobs then run
     * without them, and one that fails has the batch run again without it. */
    int no_savepoints;
    /* Take (lock = 1) or give back (0) the lock that lets one process at a time
     * migrate the database; waits for it. NULL: transactions serialise migrations. */
    int (*migrate_lock)(chatd_db *db, int lock);
    /* Read replicas (NULL: the driver has none). Open a connection to the
     * server at host:port with the settings' account and database. */
    int (*open_at)(const struct settings *s, const char *host, int port, chatd_db **out, char *err,
                   size_t errlen);
    /* The replication position (MariaDB: the GTID) of the connection's last
     * commit into buf, "" when it made none. */
    void (*commit_pos)(chatd_db *db, char *buf, size_t len);
    /* Wait at most timeout_ms for the connection's server to have applied
     * pos: 0 it has, CHATD_EBUSY not in time, another negative code when the
     * wait failed (CHATD_EUNAVAIL: the server is gone). */
    int (*wait_pos)(chatd_db *db, const char *pos, int64_t timeout_ms);
};

/* Every connection starts with this header so the core can find its driver. */
struct chatd_db {
    const struct db_driver *drv;
};

/* Every statement starts with this header. */
struct chatd_stmt {
    chatd_db *db;
};

extern const struct db_driver db_sqlite;
extern const struct db_driver db_mariadb;

/*
 * Prepare sql (kept by the connection) and bind its '?' parameters from the
 * arguments, one letter of fmt per parameter: 'i' int64_t, 's' const char *
 * (NULL binds NULL). The statement, reset after use by the caller, or NULL.
 * Worker thread (the connection's).
 */
chatd_stmt *db_bind(chatd_db *db, const char *sql, const char *fmt, ...);
/* The same, run to the end: 0 (no more rows), or a negative CHATD_E*. */
int db_run(chatd_db *db, const char *sql, const char *fmt, ...);

/* The driver of that name (sqlite, mariadb, or one added), or NULL. */
const struct db_driver *db_driver_find(const char *name);
/* Make one more driver known by its name (borrowed, like d, for the process's
 * life), as for a backend out of the tree or a test's fake. Start-up, before
 * store_backend_open names it. 0, CHATD_EINVAL (no name, or the name is
 * known already) or CHATD_ELIMIT (DB_DRIVERS_MAX known). */
#define DB_DRIVERS_MAX 8
int db_driver_add(const struct db_driver *d);

/* Apply the numbered migrations of dir/<driver name>/ not yet applied. Blocking;
 * start-up only. Returns 0 or a negative code with a reason in err. */
int db_migrate(const struct db_driver *drv, const struct settings *s, const char *dir, char *err,
               size_t errlen);

#endif
