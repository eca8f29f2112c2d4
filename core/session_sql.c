/* Login sessions in the SQL store (table user_session), for one node. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "session_store.h"
#include "store.h"

#define KEY_LEN 64

static struct store_backend *backend;
static void (*add_loaded)(const char *key, int64_t user_id, const char *username,
                          int64_t expires_s);

struct sjob {
    char key[KEY_LEN + 1];
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

static int step_done(chatd_stmt *st)
{
    int rc = st->db->drv->step(st);
    st->db->drv->reset(st);
    return rc == CHATD_DONE ? 0 : rc < 0 ? rc : CHATD_EINTERNAL;
}

static int run_insert(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, "INSERT INTO user_session (token_hash, user_id, username,"
                                    " created_at, expires_at) VALUES (?, ?, ?, ?, ?)");
    if (!st)
        return CHATD_EINTERNAL;
    d->bind_text(st, 1, j->key, strlen(j->key));
    d->bind_int(st, 2, j->user_id);
    d->bind_text(st, 3, j->username, strlen(j->username));
    d->bind_int(st, 4, (int64_t)time(NULL));
    d->bind_int(st, 5, j->expires_s);
    return step_done(st);
}

static int run_delete(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, j->user_id ? "DELETE FROM user_session WHERE user_id = ?"
                                               : "DELETE FROM user_session WHERE token_hash = ?");
    if (!st)
        return CHATD_EINTERNAL;
    if (j->user_id)
        d->bind_int(st, 1, j->user_id);
    else
        d->bind_text(st, 1, j->key, strlen(j->key));
    return step_done(st);
}

static int run_touch(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, "UPDATE user_session SET expires_at = ? WHERE token_hash = ?");
    if (!st)
        return CHATD_EINTERNAL;
    d->bind_int(st, 1, j->expires_s);
    d->bind_text(st, 2, j->key, strlen(j->key));
    return step_done(st);
}

static int run_purge(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, "DELETE FROM user_session WHERE expires_at <= ?");
    if (!st)
        return CHATD_EINTERNAL;
    d->bind_int(st, 1, j->expires_s);
    return step_done(st);
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
        memcpy(j->key, key, KEY_LEN + 1);
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

static void sql_end(const char *key, int64_t user_id)
{
    (void)user_id;
    if (submit(run_delete, key, 0, NULL, 0, NULL, NULL) < 0)
        log_warn("cannot queue a session delete");
}

static void sql_end_user(int64_t user_id)
{
    if (submit(run_delete, NULL, user_id, NULL, 0, NULL, NULL) < 0)
        log_warn("cannot queue a session delete");
}

static void sql_purge(int64_t now_s)
{
    submit(run_purge, NULL, 0, NULL, now_s, NULL, NULL);
}

static int run_load(chatd_db *db, void *arg)
{
    (void)arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, "SELECT token_hash, user_id, username, expires_at"
                                    " FROM user_session WHERE expires_at > ?");
    if (!st)
        return CHATD_EINTERNAL;
    d->bind_int(st, 1, (int64_t)time(NULL));
    int rc;
    while ((rc = d->step(st)) == CHATD_ROW) {
        const char *key = d->column_text(st, 0, NULL);
        if (key && strlen(key) == KEY_LEN)
            add_loaded(key, d->column_int(st, 1), d->column_text(st, 2, NULL),
                       d->column_int(st, 3));
    }
    d->reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

int session_sql_init(const struct settings *s, struct store_backend *b,
                     void (*add)(const char *key, int64_t user_id, const char *username,
                                 int64_t expires_s))
{
    (void)s;
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
