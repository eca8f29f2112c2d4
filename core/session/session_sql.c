/* Login sessions in the SQL store (table user_session), for one node. */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "session_store.h"
#include "store.h"

static struct store_backend *backend;
static void (*add_loaded)(const char *key, int64_t user_id, const char *username,
                          int64_t expires_s);

struct sjob {
    char key[SESSION_KEY_LEN + 1];
    int64_t user_id;
    char *username;
    int64_t expires_s;
    void (*done)(void *arg, int status);
    void *arg;
};

static void sjob_free(struct sjob *j)
{
    free(j->username);
    free(j);
}

static int run_insert(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    return db_run(db,
                  "INSERT INTO user_session (token_hash, user_id, username, created_at,"
                  " expires_at) VALUES (?, ?, ?, ?, ?)",
                  "sisii", j->key, j->user_id, j->username, clock_wall_s(), j->expires_s);
}

static int run_delete(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    if (j->user_id)
        return db_run(db, "DELETE FROM user_session WHERE user_id = ?", "i", j->user_id);
    return db_run(db, "DELETE FROM user_session WHERE token_hash = ?", "s", j->key);
}

static int run_touch(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    return db_run(db, "UPDATE user_session SET expires_at = ? WHERE token_hash = ?", "is",
                  j->expires_s, j->key);
}

static int run_purge(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    return db_run(db, "DELETE FROM user_session WHERE expires_at <= ?", "i", j->expires_s);
}

int session_sql_remove_user(chatd_db *db, int64_t user_id)
{
    return db_run(db, "DELETE FROM user_session WHERE user_id = ?", "i", user_id);
}

static void job_done(void *arg, int status)
{
    struct sjob *j = arg;
    if (status < 0)
        log_warn("session store write failed (%d)", status);
    if (j->done)
        j->done(j->arg, status);
    sjob_free(j);
}

static int submit(chatd_job_run run, const char *key, int64_t uid, const char *username,
                  int64_t exp, void (*done)(void *, int), void *arg)
{
    struct sjob *j = calloc(1, sizeof *j);
    if (!j || (username && !(j->username = strdup(username)))) {
        free(j);
        return CHATD_ENOMEM;
    }
    if (key)
        memcpy(j->key, key, SESSION_KEY_LEN + 1);
    j->user_id = uid;
    j->expires_s = exp;
    j->done = done;
    j->arg = arg;
    int rc = store_submit(backend, CHATD_JOB_WRITE, run, job_done, j);
    if (rc < 0)
        sjob_free(j);
    return rc;
}

static int sql_create(const char *key, int64_t user_id, const char *username, int64_t expires_s,
                      void (*done)(void *arg, int status), void *arg)
{
    return submit(run_insert, key, user_id, username, expires_s, done, arg);
}

static void sql_touch(const char *key, int64_t expires_s)
{
    if (submit(run_touch, key, 0, NULL, expires_s, NULL, NULL) < 0)
        log_warn("cannot queue a session refresh");
}

/* One node holds every session of this store: forgotten here, it is
 * forgotten everywhere, whenever the row goes. */
static void sql_end(const char *key, int64_t user_id, void (*done)(void *arg), void *arg)
{
    (void)user_id;
    if (submit(run_delete, key, 0, NULL, 0, NULL, NULL) < 0)
        log_warn("cannot queue a session delete");
    if (done)
        done(arg);
}

static void sql_end_user(int64_t user_id, void (*done)(void *arg), void *arg)
{
    if (submit(run_delete, NULL, user_id, NULL, 0, NULL, NULL) < 0)
        log_warn("cannot queue a session delete");
    if (done)
        done(arg);
}

static void sql_purge(int64_t now_s)
{
    submit(run_purge, NULL, 0, NULL, now_s, NULL, NULL);
}

static int run_load(chatd_db *db, void *arg)
{
    (void)arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = db_bind(db,
                             "SELECT token_hash, user_id, username, expires_at"
                             " FROM user_session WHERE expires_at > ?",
                             "i", clock_wall_s());
    if (!st)
        return CHATD_EINTERNAL;
    int rc;
    while ((rc = d->step(st)) == CHATD_ROW) {
        const char *key = d->column_text(st, 0, NULL);
        if (key && strlen(key) == SESSION_KEY_LEN)
            add_loaded(key, d->column_int(st, 1), d->column_text(st, 2, NULL),
                       d->column_int(st, 3));
    }
    d->reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

int session_sql_init(struct store_backend *b, void (*add)(const char *key, int64_t user_id,
                                                          const char *username, int64_t expires_s))
{
    backend = b;
    add_loaded = add;
    return store_run_sync(b, run_load, NULL);
}

const struct session_store session_sql = {
    .name = "sql",
    .create = sql_create,
    .touch = sql_touch,
    .end = sql_end,
    .end_user = sql_end_user,
    .lookup = NULL, /* every live session was loaded at start */
    .purge = sql_purge,
};
