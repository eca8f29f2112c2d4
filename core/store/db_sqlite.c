/* The SQLite driver: the embedded default, one file in WAL mode. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "hmap.h"
#include "log.h"

struct sq_db {
    struct chatd_db base;
    sqlite3 *h;
    hmap *stmts; /* sql text -> struct sq_stmt */
};

struct sq_stmt {
    struct chatd_stmt base;
    sqlite3_stmt *st;
};

static int sq_map(struct sq_db *d, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
        return 0;
    case SQLITE_ROW:
        return CHATD_ROW;
    case SQLITE_DONE:
        return CHATD_DONE;
    case SQLITE_CONSTRAINT:
        return CHATD_ECONFLICT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return CHATD_EBUSY;
    case SQLITE_NOMEM:
        return CHATD_ENOMEM;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY: /* a store that cannot write is unavailable, not broken */
    case SQLITE_PERM:
        log_error("sqlite: %s", sqlite3_errmsg(d->h));
        return CHATD_EUNAVAIL;
    default:
        log_error("sqlite: %s", sqlite3_errmsg(d->h));
        return CHATD_EINTERNAL;
    }
}

static chatd_stmt *sq_prepare(chatd_db *db, const char *sql);

static int sq_exec(chatd_db *db, const char *sql)
{
    struct sq_db *d = (struct sq_db *)db;
    if (!strchr(sql, ';')) {
        /* One statement (BEGIN, COMMIT, a savepoint, ...): prepared once and
         * kept with the others, since a batch runs several per job. */
        struct sq_stmt *st = (struct sq_stmt *)sq_prepare(db, sql);
        if (!st) /* SQLite's error, or out of memory while keeping the statement */
            return sqlite3_errcode(d->h) != SQLITE_OK ? sq_map(d, sqlite3_errcode(d->h))
                                                      : CHATD_ENOMEM;
        if (!st->st)
            return 0; /* only comments or blanks: nothing to run */
        int rc;
        while ((rc = sqlite3_step(st->st)) == SQLITE_ROW)
            ;
        sqlite3_reset(st->st);
        if (rc == SQLITE_DONE)
            return 0;
        if ((rc & 0xff) == SQLITE_BUSY)
            return CHATD_EBUSY;
        return sq_map(d, rc);
    }
    char *msg = NULL;
    int rc = sqlite3_exec(d->h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
        log_error("sqlite: %s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : sq_map(d, rc);
}

static int sq_open(const struct settings *s, chatd_db **out, char *err, size_t errlen)
{
    struct sq_db *d = calloc(1, sizeof *d);
    char path[4096];
    if (!d)
        return CHATD_ENOMEM;
    d->base.drv = &db_sqlite;
    if (s->sqlite_path[0] == '/' || !strcmp(s->sqlite_path, ":memory:"))
        snprintf(path, sizeof path, "%s", s->sqlite_path);
    else
        snprintf(path, sizeof path, "%s/%s", s->data_dir, s->sqlite_path);
    int rc = sqlite3_open_v2(
        path, &d->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: cannot open %s: %s", path,
                 d->h ? sqlite3_errmsg(d->h) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(d->h, (int)s->sqlite_busy_timeout);
    sqlite3_extended_result_codes(d->h, 0);
    char pragmas[256];
    /* WAL lets readers run beside the one writer; synchronous=FULL fsyncs the
     * WAL at every commit, so an acknowledged write survives power loss;
     * secure_delete zeroes what a deletion frees (a deleted message's
     * content), whatever the library's build default. */
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=ON;"
             " PRAGMA secure_delete=ON;",
             strcmp(s->sqlite_synchronous, "normal") == 0 ? "NORMAL" : "FULL");
    if (!(d->stmts = hmap_new(1)) || sq_exec(&d->base, pragmas) < 0) {
        snprintf(err, errlen, "sqlite: cannot set up %s", path);
        goto fail;
    }
    *out = &d->base;
    return 0;
fail:
    hmap_free(d->stmts);
    sqlite3_close(d->h);
    free(d);
    return CHATD_EUNAVAIL;
}

static void sq_close(chatd_db *db)
{
    struct sq_db *d = (struct sq_db *)db;
    if (!d)
        return;
    size_t pos = 0;
    void *v;
    while (hmap_iter(d->stmts, &pos, NULL, NULL, &v)) {
        struct sq_stmt *st = v;
        sqlite3_finalize(st->st);
        free(st);
    }
    hmap_free(d->stmts);
    sqlite3_close(d->h);
    free(d);
}

static int sq_begin(chatd_db *db, int write)
{
    return sq_exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN");
}

static int sq_commit(chatd_db *db)
{
    return sq_exec(db, "COMMIT");
}

static int sq_rollback(chatd_db *db)
{
    struct sq_db *d = (struct sq_db *)db;
    if (sqlite3_get_autocommit(d->h))
        return 0; /* SQLite already rolled back (e.g. on an I/O error) */
    return sq_exec(db, "ROLLBACK");
}

static chatd_stmt *sq_prepare(chatd_db *db, const char *sql)
{
    struct sq_db *d = (struct sq_db *)db;
    struct sq_stmt *st = hmap_get_str(d->stmts, sql);
    if (st) {
        sqlite3_reset(st->st);
        sqlite3_clear_bindings(st->st);
        return &st->base;
    }
    st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->base.db = db;
    if (sqlite3_prepare_v2(d->h, sql, -1, &st->st, NULL) != SQLITE_OK) {
        log_error("sqlite: cannot prepare statement: %s", sqlite3_errmsg(d->h));
        free(st);
        return NULL;
    }
    if (hmap_put_str(d->stmts, sql, st) < 0) {
        sqlite3_finalize(st->st);
        free(st);
        return NULL;
    }
    return &st->base;
}

#define SQ(st) ((struct sq_stmt *)(st))
#define SQDB(st) ((struct sq_db *)(st)->db)

static int sq_bind_int(chatd_stmt *st, int idx, int64_t v)
{
    return sq_map(SQDB(st), sqlite3_bind_int64(SQ(st)->st, idx, v));
}

static int sq_bind_text(chatd_stmt *st, int idx, const char *s, size_t len)
{
    return sq_map(SQDB(st),
                  sqlite3_bind_text64(SQ(st)->st, idx, s, len, SQLITE_TRANSIENT, SQLITE_UTF8));
}

static int sq_bind_blob(chatd_stmt *st, int idx, const void *b, size_t len)
{
    return sq_map(SQDB(st), sqlite3_bind_blob64(SQ(st)->st, idx, b, len, SQLITE_TRANSIENT));
}

static int sq_bind_null(chatd_stmt *st, int idx)
{
    return sq_map(SQDB(st), sqlite3_bind_null(SQ(st)->st, idx));
}

static int sq_step(chatd_stmt *st)
{
    int rc = sqlite3_step(SQ(st)->st);
    if (rc != SQLITE_ROW)
        sqlite3_reset(SQ(st)->st); /* releases read locks early */
    return sq_map(SQDB(st), rc);
}

static int64_t sq_column_int(chatd_stmt *st, int col)
{
    return sqlite3_column_int64(SQ(st)->st, col);
}

static const char *sq_column_text(chatd_stmt *st, int col, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(SQ(st)->st, col);
    if (len)
        *len = (size_t)sqlite3_column_bytes(SQ(st)->st, col);
    return t;
}

static int sq_column_is_null(chatd_stmt *st, int col)
{
    return sqlite3_column_type(SQ(st)->st, col) == SQLITE_NULL;
}

static void sq_reset(chatd_stmt *st)
{
    sqlite3_reset(SQ(st)->st);
    sqlite3_clear_bindings(SQ(st)->st);
}

static int64_t sq_last_insert_id(chatd_db *db)
{
    return sqlite3_last_insert_rowid(((struct sq_db *)db)->h);
}

/* One writer, and each row of an INSERT takes the largest id + 1. */
static int64_t sq_insert_step(chatd_db *db)
{
    (void)db;
    return 1;
}

static int64_t sq_first_insert_id(chatd_db *db, size_t rows)
{
    return sq_last_insert_id(db) - (int64_t)rows + 1;
}

static int64_t sq_changes(chatd_db *db)
{
    return sqlite3_changes(((struct sq_db *)db)->h);
}

const struct db_driver db_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .prepare = sq_prepare,
    .bind_int = sq_bind_int,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .bind_null = sq_bind_null,
    .step = sq_step,
    .column_int = sq_column_int,
    .column_text = sq_column_text,
    .column_is_null = sq_column_is_null,
    .reset = sq_reset,
    .last_insert_id = sq_last_insert_id,
    .insert_step = sq_insert_step,
    .first_insert_id = sq_first_insert_id,
    .changes = sq_changes,
    .max_writers = 1,
};
