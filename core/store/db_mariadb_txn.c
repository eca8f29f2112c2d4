/*
 * Transactions of the MariaDB driver. A write transaction ends with COMMIT
 * AND CHAIN, which opens the next one in the same round trip: a writer's
 * next batch, when it begins within mariadb.chain_ms, runs in it and saves
 * the round trip of START TRANSACTION. A connection idle for longer, which
 * the server may have dropped meanwhile, starts its transaction as before,
 * reconnecting first when it must; should the server have gone in the
 * short while, the first statement of the chained transaction finds out
 * before anything of it ran, and its batch is run again on a new
 * connection. A statement outside a transaction commits the empty chained
 * one first, so that it runs on its own as it always did.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "db_mariadb.h"

/* ---- statements put off: run with the next one, or the commit ---- */

/* Room for n more bytes and the NUL. */
static int later_room(struct my_db *d, size_t n)
{
    if (d->later_len + n + 1 <= d->later_cap)
        return 0;
    size_t cap = d->later_cap ? d->later_cap : 512;
    while (cap < d->later_len + n + 1)
        cap *= 2;
    char *b = realloc(d->later, cap);
    if (!b)
        return CHATD_ENOMEM;
    d->later = b;
    d->later_cap = cap;
    return 0;
}

static int later_put(struct my_db *d, const char *p, size_t n)
{
    int rc = later_room(d, n);
    if (rc < 0)
        return rc;
    memcpy(d->later + d->later_len, p, n);
    d->later_len += n;
    d->later[d->later_len] = '\0';
    return 0;
}

/* A bound parameter as a literal: a number, NULL, an escaped string, a
 * blob in hex. */
static int later_param(struct my_db *d, const MYSQL_BIND *b)
{
    char num[32];
    const unsigned char *v = b->buffer;
    unsigned long len = b->buffer_length;
    switch (b->buffer_type) {
    case MYSQL_TYPE_LONGLONG: {
        long long x;
        memcpy(&x, v, sizeof x);
        return later_put(d, num, (size_t)snprintf(num, sizeof num, "%lld", x));
    }
    case MYSQL_TYPE_STRING: {
        int rc = later_put(d, "'", 1);
        if (rc == 0 && (rc = later_room(d, 2 * (size_t)len + 1)) == 0) {
            unsigned long n =
                mysql_real_escape_string(d->h, d->later + d->later_len, (const char *)v, len);
            if (n == (unsigned long)-1)
                return CHATD_EINTERNAL;
            d->later_len += n;
            rc = later_put(d, "'", 1);
        }
        return rc;
    }
    case MYSQL_TYPE_BLOB: {
        int rc = later_put(d, "X'", 2);
        for (unsigned long i = 0; rc == 0 && i < len; i++)
            rc = later_put(d, num, (size_t)snprintf(num, sizeof num, "%02x", v[i]));
        return rc == 0 ? later_put(d, "'", 1) : rc;
    }
    default:
        return later_put(d, "NULL", 4);
    }
}

int my_step_later(chatd_stmt *stmt)
{
    struct my_stmt *st = MYS(stmt);
    struct my_db *d = MY(st->base.db);
    if (!d->in_txn || st->n_cols || d->broken)
        return my_step(stmt);
    size_t mark = d->later_len;
    int rc = mark ? later_put(d, ";", 1) : 0;
    unsigned k = 0;
    int quoted = 0;
    for (const char *p = st->sql, *from = p; rc == 0; p++) {
        quoted ^= *p == '\'';
        if (*p && (*p != '?' || quoted))
            continue;
        rc = later_put(d, from, (size_t)(p - from));
        if (rc == 0 && *p)
            rc = k < st->n_params ? later_param(d, &st->params[k++]) : CHATD_EINTERNAL;
        if (!*p)
            break;
        from = p + 1;
    }
    if (rc < 0) {
        d->later_len = mark;
        if (d->later)
            d->later[mark] = '\0';
        return rc;
    }
    return CHATD_DONE;
}

int my_ready(struct my_db *d, int *first)
{
    if (first)
        *first = d->chain_fresh;
    d->chain_fresh = 0;
    if (d->in_txn && d->later_len) {
        d->later_len = 0;
        return my_query(d, d->later);
    }
    if (!d->chained || d->in_txn)
        return 0;
    d->chained = 0;
    return my_query(d, "COMMIT");
}

int my_first_error(struct my_db *d, int rc, int first)
{
    return rc == CHATD_EUNAVAIL && first && d->broken ? CHATD_EBUSY : rc;
}

/* A connection that sat idle while the server restarted finds out here,
 * before anything of the transaction ran: connect again and start once more,
 * so the job does not fail for a loss nobody saw. */
int my_begin(chatd_db *db, int write)
{
    struct my_db *d = MY(db);
    int64_t chain_us = (int64_t)d->s->mariadb_chain_ms * 1000;
    if (write && d->chained && !d->broken && !d->in_txn &&
        clock_now_us() - d->chained_us < chain_us) {
        d->chained = 0;
        d->in_txn = d->write_txn = d->chain_fresh = 1;
        return 0;
    }
    d->later_len = 0;
    d->chained = 0; /* START TRANSACTION commits the empty chained one */
    int rc = my_revive(d);
    if (rc == 0 && (rc = my_query(d, "START TRANSACTION")) == CHATD_EUNAVAIL && d->broken &&
        (rc = my_revive(d)) == 0)
        rc = my_query(d, "START TRANSACTION");
    if (rc == 0) {
        d->in_txn = 1;
        d->write_txn = write;
    }
    return rc;
}

/* The GTID of the commit just answered, as the server tracked it. */
static void note_gtid(struct my_db *d)
{
    const char *data;
    size_t len;
    int is_name = 1, want = 0;
    if (mysql_session_track_get_first(d->h, SESSION_TRACK_SYSTEM_VARIABLES, &data, &len))
        return;
    do {
        if (!is_name && want && len < sizeof d->last_gtid) {
            memcpy(d->last_gtid, data, len);
            d->last_gtid[len] = '\0';
        }
        want = is_name && len == 9 && memcmp(data, "last_gtid", 9) == 0;
        is_name = !is_name;
    } while (!mysql_session_track_get_next(d->h, SESSION_TRACK_SYSTEM_VARIABLES, &data, &len));
}

int my_commit(chatd_db *db)
{
    struct my_db *d = MY(db);
    int chain = d->write_txn && d->s->mariadb_chain_ms > 0;
    const char *verb = chain ? "COMMIT AND CHAIN" : "COMMIT";
    int rc = 0;
    if (d->later_len) { /* the statements put off, and the commit, in one round trip */
        rc = later_put(d, ";", 1);
        if (rc == 0 && (rc = later_put(d, verb, strlen(verb))) == 0)
            verb = d->later;
        d->later_len = 0;
    }
    if (rc == 0)
        rc = my_first_error(d, my_query(d, verb), d->chain_fresh);
    d->in_txn = d->chain_fresh = 0;
    if (rc == 0 && d->track_gtid)
        note_gtid(d);
    if (rc == 0 && chain) {
        d->chained = 1;
        d->chained_us = clock_now_us();
    }
    return rc;
}

void my_commit_pos(chatd_db *db, char *buf, size_t len)
{
    snprintf(buf, len, "%s", MY(db)->last_gtid);
}

/* MASTER_GTID_WAIT on a replica; pos is one the primary gave ("0-1-42", or
 * a list of them), checked before it goes into the statement. */
int my_wait_pos(chatd_db *db, const char *pos, int64_t timeout_ms)
{
    struct my_db *d = MY(db);
    if (!*pos || strspn(pos, "0123456789-,") != strlen(pos) || strlen(pos) > 200)
        return CHATD_EINVAL;
    int rc = my_revive(d);
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT MASTER_GTID_WAIT('%s', %lld.%03lld)", pos,
             (long long)(timeout_ms / 1000), (long long)(timeout_ms % 1000));
    if (rc == 0)
        rc = my_ready(d, NULL);
    if (rc < 0)
        return rc;
    if (mysql_real_query(d->h, sql, strlen(sql)))
        return my_map(d, mysql_errno(d->h), mysql_error(d->h));
    MYSQL_RES *r = mysql_store_result(d->h);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    rc = !row || !row[0] ? CHATD_EINTERNAL : strcmp(row[0], "0") == 0 ? 0 : CHATD_EBUSY;
    if (r)
        mysql_free_result(r);
    else
        rc = mysql_errno(d->h) ? my_map(d, mysql_errno(d->h), mysql_error(d->h)) : CHATD_EINTERNAL;
    return rc;
}

int my_rollback(chatd_db *db)
{
    struct my_db *d = MY(db);
    d->in_txn = d->chain_fresh = d->chained = 0;
    d->later_len = 0;
    if (d->broken)
        return 0; /* the server rolled back when the connection died */
    return my_query(d, "ROLLBACK");
}
