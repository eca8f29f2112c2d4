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
#include <string.h>

#include "clock.h"
#include "config.h"
#include "db_mariadb.h"

int my_unchain(struct my_db *d)
{
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
    int rc = my_first_error(d, my_query(d, chain ? "COMMIT AND CHAIN" : "COMMIT"), d->chain_fresh);
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
        rc = my_unchain(d);
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
    if (d->broken)
        return 0; /* the server rolled back when the connection died */
    return my_query(d, "ROLLBACK");
}
