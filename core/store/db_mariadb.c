/*
 * The MariaDB driver (mariadb-connector-c), for nodes that share one
 * database. Prepared statements bind parameters and read every column as
 * text into per-column buffers that grow on truncation. A connection that
 * loses the server, or whose result ended in an error (a deadlock), is
 * marked broken and reconnected at its next transaction; until then its
 * calls fail with CHATD_EUNAVAIL.
 */
#include <errno.h>
#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db_mariadb.h"
#include "log.h"

int my_map(struct my_db *d, unsigned err, const char *msg)
{
    switch (err) {
    case 0:
        return 0;
    case ER_DUP_ENTRY:
    case ER_DUP_KEY:
        return CHATD_ECONFLICT;
    case ER_LOCK_DEADLOCK:
    case ER_LOCK_WAIT_TIMEOUT:
        return CHATD_EBUSY;
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_SERVER_LOST_EXTENDED:
    case ER_CONNECTION_KILLED:
    case ER_SERVER_SHUTDOWN:
        if (!d->broken)
            log_warn("mariadb: %s", msg);
        d->broken = 1;
        return CHATD_EUNAVAIL;
    case ER_OPTION_PREVENTS_STATEMENT: /* read_only: a store that cannot write */
    case ER_DISK_FULL:
    case ER_RECORD_FILE_FULL:
        log_warn("mariadb: %s", msg);
        return CHATD_EUNAVAIL;
    default:
        log_error("mariadb: %u: %s", err, msg);
        return CHATD_EINTERNAL;
    }
}

/* Have the server tell each commit's GTID in its answer (no round trip), on
 * a primary whose writes replicas follow. */
/* InnoDB gives the rows of one multi-row INSERT consecutive ids unless
 * innodb_autoinc_lock_mode is 2 ("interleaved"); they are then
 * auto_increment_increment apart (a Galera cluster sets it). */
static void read_id_step(struct my_db *d)
{
    d->id_step = 0;
    if (mysql_query(d->h, "SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment"))
        return;
    MYSQL_RES *r = mysql_store_result(d->h);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    if (row && row[0] && row[1] && atoi(row[0]) <= 1 && atoll(row[1]) > 0)
        d->id_step = atoll(row[1]);
    if (r)
        mysql_free_result(r);
}

static void track_gtid(struct my_db *d)
{
    const struct settings *s = d->s;
    d->track_gtid = !d->host && s->mariadb_replicas && s->mariadb_replicas[0] &&
                    !mysql_query(d->h, "SET SESSION session_track_system_variables = 'last_gtid'");
}

static int my_connect(struct my_db *d, char *err, size_t errlen)
{
    const struct settings *s = d->s;
    const char *host = d->host ? d->host : s->mariadb_socket[0] ? NULL : s->mariadb_host;
    const char *sock = d->host || !s->mariadb_socket[0] ? NULL : s->mariadb_socket;
    unsigned port = d->host ? (unsigned)d->port : (unsigned)s->mariadb_port;
    if (!(d->h = mysql_init(NULL))) {
        snprintf(err, errlen, "mariadb: out of memory");
        return CHATD_ENOMEM;
    }
    unsigned timeout = (unsigned)s->mariadb_connect_timeout;
    unsigned io_timeout = (unsigned)s->mariadb_io_timeout;
    mysql_options(d->h, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(d->h, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
    mysql_options(d->h, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
    mysql_options(d->h, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!mysql_real_connect(d->h, host, s->mariadb_user, s->mariadb_password, s->mariadb_database,
                            port, sock, CLIENT_MULTI_STATEMENTS | CLIENT_FOUND_ROWS)) {
        snprintf(err, errlen, "mariadb: cannot connect to %s:%u as %s: %s", sock ? sock : host,
                 port, s->mariadb_user, mysql_error(d->h));
        mysql_close(d->h);
        d->h = NULL;
        return CHATD_EUNAVAIL;
    }
    /* Read committed: a transaction sees rows other nodes committed, and
     * locking reads (FOR UPDATE) serialise what must not interleave. */
    if (mysql_query(d->h, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") ||
        mysql_query(d->h, "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")) {
        snprintf(err, errlen, "mariadb: %s", mysql_error(d->h));
        mysql_close(d->h);
        d->h = NULL;
        return CHATD_EUNAVAIL;
    }
    track_gtid(d);
    read_id_step(d);
    d->broken = d->chained = 0;
    return 0;
}

static void stmt_free(struct my_stmt *st)
{
    if (!st)
        return;
    if (st->st)
        mysql_stmt_close(st->st);
    for (unsigned i = 0; i < st->n_params; i++)
        free(st->param_bufs ? st->param_bufs[i] : NULL);
    free(st->param_bufs);
    free(st->params);
    for (unsigned i = 0; i < st->n_cols; i++)
        free(st->col[i].buf);
    free(st->col);
    free(st->cols);
    free(st->sql);
    free(st);
}

static int my_open_at(const struct settings *s, const char *host, int port, chatd_db **out,
                      char *err, size_t errlen)
{
    struct my_db *d = calloc(1, sizeof *d);
    if (!d || !(d->stmts = hmap_new(1))) {
        free(d);
        return CHATD_ENOMEM;
    }
    d->base.drv = &db_mariadb;
    d->s = s;
    d->host = host;
    d->port = port;
    int rc = my_connect(d, err, errlen);
    if (rc < 0) {
        hmap_free(d->stmts);
        free(d);
        return rc;
    }
    *out = &d->base;
    return 0;
}

static int my_open(const struct settings *s, chatd_db **out, char *err, size_t errlen)
{
    return my_open_at(s, NULL, 0, out, err, errlen);
}

/* The connection, then its statements: those then say nothing to the
 * server, and one left in the middle of a result (my_step) waits for none. */
static void disconnect(struct my_db *d)
{
    if (d->h)
        mysql_close(d->h);
    d->h = NULL;
    size_t pos = 0;
    void *v;
    while (d->stmts && hmap_iter(d->stmts, &pos, NULL, NULL, &v))
        stmt_free(v);
    hmap_free(d->stmts);
}

static void my_close(chatd_db *db)
{
    struct my_db *d = MY(db);
    if (!d)
        return;
    disconnect(d);
    free(d->later);
    free(d);
}

int my_revive(struct my_db *d)
{
    if (!d->broken && d->h)
        return 0;
    char err[256] = "mariadb: out of memory";
    disconnect(d);
    if (!(d->stmts = hmap_new(1)) || my_connect(d, err, sizeof err) < 0) {
        log_warn("%s", err);
        d->broken = 1;
        return CHATD_EUNAVAIL;
    }
    log_info("mariadb: reconnected");
    return 0;
}

int my_query(struct my_db *d, const char *sql)
{
    if (!d->h || d->broken)
        return CHATD_EUNAVAIL;
    if (mysql_real_query(d->h, sql, strlen(sql)))
        return my_map(d, mysql_errno(d->h), mysql_error(d->h));
    /* Drain every result of a multi-statement script. */
    int status;
    do {
        MYSQL_RES *r = mysql_store_result(d->h);
        if (r)
            mysql_free_result(r);
        else if (mysql_field_count(d->h) != 0)
            return my_map(d, mysql_errno(d->h), mysql_error(d->h));
        status = mysql_next_result(d->h);
        if (status > 0)
            return my_map(d, mysql_errno(d->h), mysql_error(d->h));
    } while (status == 0);
    return 0;
}

/* What the driver runs for the store: on its own, or in the transaction. */
static int my_exec(chatd_db *db, const char *sql)
{
    struct my_db *d = MY(db);
    int first, rc = my_ready(d, &first);
    return my_first_error(d, rc ? rc : my_query(d, sql), first);
}

/* Ready a statement to run again. Freeing its result is enough: every
 * result is stored whole (mysql_stmt_store_result), no cursor stays open and
 * no long data is sent, so there is nothing of it left on the server, and
 * mysql_stmt_reset would only cost one more round trip (COM_STMT_RESET) after
 * every statement. */
static void stmt_done(struct my_stmt *st)
{
    mysql_stmt_free_result(st->st);
}

static chatd_stmt *my_prepare(chatd_db *db, const char *sql)
{
    struct my_db *d = MY(db);
    if (!d->h || d->broken)
        return NULL;
    struct my_stmt *st = hmap_get_str(d->stmts, sql);
    if (st) {
        if (st->executed) {
            stmt_done(st);
            st->executed = 0;
        }
        return &st->base;
    }
    if (!(st = calloc(1, sizeof *st)))
        return NULL;
    st->base.db = db;
    if (!(st->sql = strdup(sql))) {
        free(st);
        return NULL;
    }
    if (!(st->st = mysql_stmt_init(d->h)) || mysql_stmt_prepare(st->st, sql, strlen(sql))) {
        my_map(d, st->st ? mysql_stmt_errno(st->st) : CR_OUT_OF_MEMORY,
               st->st ? mysql_stmt_error(st->st) : "out of memory");
        stmt_free(st);
        return NULL;
    }
    st->n_params = (unsigned)mysql_stmt_param_count(st->st);
    st->n_cols = mysql_stmt_field_count(st->st);
    st->params = calloc(st->n_params + 1, sizeof *st->params);
    st->param_bufs = calloc(st->n_params + 1, sizeof *st->param_bufs);
    st->cols = calloc(st->n_cols + 1, sizeof *st->cols);
    st->col = calloc(st->n_cols + 1, sizeof *st->col);
    if (!st->params || !st->param_bufs || !st->cols || !st->col ||
        hmap_put_str(d->stmts, sql, st) < 0) {
        stmt_free(st);
        return NULL;
    }
    for (unsigned i = 0; i < st->n_params; i++)
        st->params[i].buffer_type = MYSQL_TYPE_NULL;
    for (unsigned i = 0; i < st->n_cols; i++) {
        struct my_col *c = &st->col[i];
        c->cap = 64;
        if (!(c->buf = malloc(c->cap + 1))) {
            hmap_del_str(d->stmts, sql);
            stmt_free(st);
            return NULL;
        }
        st->cols[i] = (MYSQL_BIND){.buffer_type = MYSQL_TYPE_STRING,
                                   .buffer = c->buf,
                                   .buffer_length = c->cap,
                                   .length = &c->len,
                                   .is_null = &c->is_null,
                                   .error = &c->error};
    }
    return &st->base;
}

static int bind_copy(chatd_stmt *stmt, int idx, const void *p, size_t len, int type)
{
    struct my_stmt *st = MYS(stmt);
    if (idx < 1 || (unsigned)idx > st->n_params)
        return CHATD_EINVAL;
    unsigned i = (unsigned)idx - 1;
    char *copy = malloc(len + 1);
    if (!copy)
        return CHATD_ENOMEM;
    memcpy(copy, p, len);
    copy[len] = '\0';
    free(st->param_bufs[i]);
    st->param_bufs[i] = copy;
    st->params[i] =
        (MYSQL_BIND){.buffer_type = type, .buffer = copy, .buffer_length = (unsigned long)len};
    return 0;
}

static int my_bind_int(chatd_stmt *stmt, int idx, int64_t v)
{
    return bind_copy(stmt, idx, &v, sizeof v, MYSQL_TYPE_LONGLONG);
}

static int my_bind_text(chatd_stmt *stmt, int idx, const char *s, size_t len)
{
    return bind_copy(stmt, idx, s, len, MYSQL_TYPE_STRING);
}

static int my_bind_blob(chatd_stmt *stmt, int idx, const void *b, size_t len)
{
    return bind_copy(stmt, idx, b, len, MYSQL_TYPE_BLOB);
}

static int my_bind_null(chatd_stmt *stmt, int idx)
{
    struct my_stmt *st = MYS(stmt);
    if (idx < 1 || (unsigned)idx > st->n_params)
        return CHATD_EINVAL;
    st->params[idx - 1] = (MYSQL_BIND){.buffer_type = MYSQL_TYPE_NULL};
    return 0;
}

/* Re-read truncated columns into grown buffers. */
static int refetch_truncated(struct my_stmt *st)
{
    for (unsigned i = 0; i < st->n_cols; i++) {
        struct my_col *c = &st->col[i];
        if (!c->error || c->len <= c->cap)
            continue;
        char *nb = realloc(c->buf, c->len + 1);
        if (!nb)
            return CHATD_ENOMEM;
        c->buf = nb;
        c->cap = c->len;
        st->cols[i].buffer = nb;
        st->cols[i].buffer_length = c->cap;
        if (mysql_stmt_fetch_column(st->st, &st->cols[i], i, 0))
            return CHATD_EINTERNAL;
        c->error = 0;
    }
    /* The grown buffers must be bound for the next rows too. */
    return mysql_stmt_bind_result(st->st, st->cols) ? CHATD_EINTERNAL : 0;
}

int my_step(chatd_stmt *stmt)
{
    struct my_stmt *st = MYS(stmt);
    struct my_db *d = MY(st->base.db);
    if (d->broken)
        return CHATD_EUNAVAIL;
    if (!st->executed) {
        int first, rc = my_ready(d, &first);
        if (rc < 0)
            return my_first_error(d, rc, first);
        if ((st->n_params && mysql_stmt_bind_param(st->st, st->params)) ||
            mysql_stmt_execute(st->st))
            return my_first_error(d, my_map(d, mysql_stmt_errno(st->st), mysql_stmt_error(st->st)),
                                  first);
        st->executed = 1;
        d->changes = (int64_t)mysql_stmt_affected_rows(st->st);
        d->last_id = (int64_t)mysql_stmt_insert_id(st->st);
        if (st->n_cols == 0)
            return CHATD_DONE;
        if (mysql_stmt_bind_result(st->st, st->cols) || mysql_stmt_store_result(st->st)) {
            /* The rows ended in an error (a locking read's deadlock): the
             * library would wait for more of them if the statement ran
             * again, or was reset or closed. Only a new connection is safe. */
            int rc = my_map(d, mysql_stmt_errno(st->st), mysql_stmt_error(st->st));
            d->broken = 1;
            return rc;
        }
    }
    if (st->n_cols == 0)
        return CHATD_DONE;
    int rc = mysql_stmt_fetch(st->st);
    if (rc == MYSQL_NO_DATA)
        return CHATD_DONE;
    if (rc == MYSQL_DATA_TRUNCATED && refetch_truncated(st) < 0)
        return CHATD_EINTERNAL;
    if (rc == 1)
        return my_map(d, mysql_stmt_errno(st->st), mysql_stmt_error(st->st));
    for (unsigned i = 0; i < st->n_cols; i++) {
        struct my_col *c = &st->col[i];
        c->buf[c->len < c->cap ? c->len : c->cap] = '\0';
    }
    return CHATD_ROW;
}

static int64_t my_column_int(chatd_stmt *stmt, int col)
{
    struct my_stmt *st = MYS(stmt);
    if (col < 0 || (unsigned)col >= st->n_cols || st->col[col].is_null)
        return 0;
    return strtoll(st->col[col].buf, NULL, 10);
}

static const char *my_column_text(chatd_stmt *stmt, int col, size_t *len)
{
    struct my_stmt *st = MYS(stmt);
    if (col < 0 || (unsigned)col >= st->n_cols || st->col[col].is_null) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = st->col[col].len;
    return st->col[col].buf;
}

static int my_column_is_null(chatd_stmt *stmt, int col)
{
    struct my_stmt *st = MYS(stmt);
    return col < 0 || (unsigned)col >= st->n_cols || st->col[col].is_null;
}

static void my_reset(chatd_stmt *stmt)
{
    struct my_stmt *st = MYS(stmt);
    if (st->executed && !MY(st->base.db)->broken)
        stmt_done(st);
    st->executed = 0;
}

static int64_t my_last_insert_id(chatd_db *db)
{
    return MY(db)->last_id;
}

static int64_t my_insert_step(chatd_db *db)
{
    return MY(db)->id_step;
}

static int64_t my_changes(chatd_db *db)
{
    return MY(db)->changes;
}

/* A named lock of the server, for this database: the first node migrates,
 * the others wait (up to 120 s) and then find every step applied. */
static int my_migrate_lock(chatd_db *db, int lock)
{
    struct my_db *d = MY(db);
    char name[160];
    snprintf(name, sizeof name, "chatd_migrate:%s", d->s->mariadb_database);
    chatd_stmt *st = my_prepare(db, lock ? "SELECT GET_LOCK(?, 120)" : "SELECT RELEASE_LOCK(?)");
    if (!st)
        return CHATD_EUNAVAIL;
    int rc = my_bind_text(st, 1, name, strlen(name));
    if (rc == 0)
        rc = my_step(st);
    int got = rc == CHATD_ROW && my_column_int(st, 0) == 1;
    my_reset(st);
    if (lock && !got) {
        log_error("mariadb: the migration lock %s was not granted within 120 s", name);
        return rc < 0 ? rc : CHATD_EUNAVAIL;
    }
    return 0;
}

const struct db_driver db_mariadb = {
    .name = "mariadb",
    .open = my_open,
    .close = my_close,
    .exec = my_exec,
    .begin = my_begin,
    .commit = my_commit,
    .rollback = my_rollback,
    .prepare = my_prepare,
    .bind_int = my_bind_int,
    .bind_text = my_bind_text,
    .bind_blob = my_bind_blob,
    .bind_null = my_bind_null,
    .step = my_step,
    .step_later = my_step_later,
    .column_int = my_column_int,
    .column_text = my_column_text,
    .column_is_null = my_column_is_null,
    .reset = my_reset,
    .last_insert_id = my_last_insert_id,
    .insert_step = my_insert_step,
    .changes = my_changes,
    .max_writers = 0, /* row locks let several write at once: mariadb.writers */
    .no_savepoints = 1,
    .migrate_lock = my_migrate_lock,
    .open_at = my_open_at,
    .commit_pos = my_commit_pos,
    .wait_pos = my_wait_pos,
};
