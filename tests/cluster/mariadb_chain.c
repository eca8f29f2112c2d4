/*
 * The MariaDB driver's chained transactions (core/store/db_mariadb_txn.c)
 * on a real server: a write transaction's commit opens the next one, which
 * a transaction begun within mariadb.chain_ms runs in without a START
 * TRANSACTION; a statement outside a transaction still commits on its own;
 * a writer idle for longer starts its transaction as before; a chained
 * transaction whose connection the server dropped fails at its first
 * statement with CHATD_EBUSY (run the batch again), and the next begin
 * reconnects. Statements put off (step_later) run with the next statement
 * or the commit, their parameters as literals, and their errors fail it.
 *
 * Run by test_mariadb_driver.py; the arguments are chatd settings
 * (mariadb.port=..., mariadb.chain_ms=...). Exit 0 when every check holds,
 * 1 with a line on stderr otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEST_NAME "mariadb_chain"
#include "driver_test.h"

/* The first column of the first row of sql on db, or -1. */
static int64_t value(chatd_db *db, const char *sql)
{
    chatd_stmt *st = drv->prepare(db, sql);
    int64_t v = st && drv->step(st) == CHATD_ROW ? drv->column_int(st, 0) : -1;
    if (st)
        drv->reset(st);
    return v;
}

/* The server's START TRANSACTIONs so far (the observer's own are none). */
static int64_t begins(chatd_db *observer)
{
    return value(observer, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
                           " WHERE VARIABLE_NAME = 'COM_BEGIN'");
}

static int64_t rows(chatd_db *observer)
{
    return value(observer, "SELECT COUNT(*) FROM ch");
}

static int insert(chatd_db *db, int64_t id)
{
    chatd_stmt *st = drv->prepare(db, "INSERT INTO ch (id) VALUES (?)");
    int rc = st ? drv->bind_int(st, 1, id) : CHATD_EINTERNAL;
    if (rc == 0 && (rc = drv->step(st)) == CHATD_DONE)
        rc = 0;
    else if (rc >= 0)
        rc = CHATD_EINTERNAL;
    if (st)
        drv->reset(st);
    return rc;
}

/* One write transaction of one row: begin, insert, commit. */
static void write_row(chatd_db *db, int64_t id)
{
    if (drv->begin(db, 1) < 0 || insert(db, id) < 0 || drv->commit(db) < 0)
        FAIL("the transaction writing %lld", (long long)id);
}

/* An INSERT of (id, text, blob) put off with step_later. */
static int insert_later(chatd_db *db, int64_t id, const char *t, size_t tlen, const void *b,
                        size_t blen)
{
    chatd_stmt *st = drv->prepare(db, "INSERT INTO chs (id, t, b, q) VALUES (?, ?, ?, '?')");
    int rc = st ? drv->bind_int(st, 1, id) : CHATD_EINTERNAL;
    if (rc == 0)
        rc = t ? drv->bind_text(st, 2, t, tlen) : drv->bind_null(st, 2);
    if (rc == 0)
        rc = drv->bind_blob(st, 3, b, blen);
    if (rc == 0)
        rc = drv->step_later(st);
    if (st)
        drv->reset(st);
    return rc;
}

/* Statements put off until the next statement or the commit (step_later). */
static void later_checks(chatd_db *w, chatd_db *o)
{
    static const char text[] =
        "it's a \\ back'slash?\0 nul \"quoted\" \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80";
    static const unsigned char blob[] = {0, 0x27, 0x5c, 0xff, 0x3f};
    if (drv->exec(w, "CREATE TABLE IF NOT EXISTS chs (id BIGINT PRIMARY KEY,"
                     " t VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,"
                     " b VARBINARY(16), q CHAR(1)) ENGINE=InnoDB") < 0 ||
        drv->exec(w, "DELETE FROM chs") < 0)
        FAIL("cannot make the table chs");
    /* the next statement of the transaction sees what was put off */
    if (drv->begin(w, 1) < 0 ||
        insert_later(w, 1, text, sizeof text - 1, blob, sizeof blob) != CHATD_DONE ||
        insert_later(w, 2, NULL, 0, blob, 1) != CHATD_DONE)
        FAIL("step_later");
    if (value(o, "SELECT COUNT(*) FROM chs") != 0)
        FAIL("a statement put off was seen before the commit");
    if (value(w, "SELECT COUNT(*) FROM chs") != 2)
        FAIL("the next statement did not see the statements put off");
    /* put off until the commit, and committed by it */
    if (insert_later(w, 3, "three", 5, blob, 0) != CHATD_DONE || drv->commit(w) < 0)
        FAIL("the commit of a statement put off");
    if (value(o, "SELECT COUNT(*) FROM chs") != 3)
        FAIL("the statements put off were not committed");
    /* the literals are the values bound */
    chatd_stmt *st = drv->prepare(o, "SELECT t, HEX(b), q FROM chs WHERE id = 1");
    size_t len = 0;
    const char *got = st && drv->step(st) == CHATD_ROW ? drv->column_text(st, 0, &len) : NULL;
    if (!got || len != sizeof text - 1 || memcmp(got, text, len) != 0)
        FAIL("the text came back as %s (%zu bytes)", got ? got : "nothing", len);
    if (strcmp(drv->column_text(st, 1, NULL), "00275CFF3F") != 0 ||
        strcmp(drv->column_text(st, 2, NULL), "?") != 0)
        FAIL("the blob or the quoted '?' came back wrong");
    drv->reset(st);
    if (value(o, "SELECT COUNT(*) FROM chs WHERE id = 2 AND t IS NULL") != 1)
        FAIL("a NULL put off was not NULL");
    /* the error of a statement put off fails the commit, which writes nothing */
    if (drv->begin(w, 1) < 0 || insert_later(w, 4, "four", 4, blob, 1) != CHATD_DONE ||
        insert_later(w, 1, "again", 5, blob, 1) != CHATD_DONE)
        FAIL("step_later of a duplicate");
    int rc = drv->commit(w);
    if (rc != CHATD_ECONFLICT)
        FAIL("the commit after a duplicate put off gave %d, not CHATD_ECONFLICT", rc);
    drv->rollback(w);
    if (value(o, "SELECT COUNT(*) FROM chs") != 3)
        FAIL("a failed commit wrote what was put off");
    write_row(w, 7); /* the connection goes on */
}

int main(int argc, char **argv)
{
    driver_setup(argc, argv);
    if (s.mariadb_chain_ms < 100)
        FAIL("give mariadb.chain_ms of 100 or more");
    chatd_db *w = open_db(), *o = open_db();
    if (drv->exec(w, "CREATE TABLE IF NOT EXISTS ch (id BIGINT PRIMARY KEY) ENGINE=InnoDB") < 0 ||
        drv->exec(w, "DELETE FROM ch") < 0)
        FAIL("cannot make the table");

    /* the first transaction starts; the next, at once after, is chained */
    int64_t b0 = begins(o);
    write_row(w, 1);
    int64_t id = -1;
    if (drv->begin(w, 1) < 0 || insert(w, 2) < 0 || (id = value(w, "SELECT CONNECTION_ID()")) < 0 ||
        drv->commit(w) < 0)
        FAIL("the chained transaction");
    if (begins(o) - b0 != 1)
        FAIL("%lld START TRANSACTIONs for two transactions, not 1", (long long)(begins(o) - b0));
    if (rows(o) != 2)
        FAIL("the chained transaction's row is not committed (%lld rows)", (long long)rows(o));

    /* a statement outside a transaction commits on its own, not in the
     * chained transaction left open */
    if (insert(w, 3) < 0 || rows(o) != 3)
        FAIL("a statement outside a transaction was not committed (%lld rows)", (long long)rows(o));

    /* idle for longer than chain_ms: START TRANSACTION again */
    write_row(w, 4);
    struct timespec idle = {(time_t)(s.mariadb_chain_ms * 3 / 2 / 1000),
                            (long)(s.mariadb_chain_ms * 3 / 2 % 1000) * 1000000L};
    nanosleep(&idle, NULL);
    b0 = begins(o);
    write_row(w, 5);
    if (begins(o) - b0 != 1)
        FAIL("an idle writer's transaction was not started anew");

    /* the server drops the connection of a chained transaction: its first
     * statement says run again, the next begin reconnects */
    if (drv->begin(w, 1) < 0 || (id = value(w, "SELECT CONNECTION_ID()")) < 0 || drv->commit(w) < 0)
        FAIL("the connection's id");
    char kill[64];
    snprintf(kill, sizeof kill, "KILL %lld", (long long)id);
    if (drv->exec(o, kill) < 0)
        FAIL("%s", kill);
    int rc = drv->begin(w, 1);
    if (rc == 0)
        rc = insert(w, 6);
    if (rc != CHATD_EBUSY)
        FAIL("the first statement on a dropped connection gave %d, not CHATD_EBUSY", rc);
    drv->rollback(w);
    write_row(w, 6);
    if (rows(o) != 6)
        FAIL("the write after the reconnect is not committed (%lld rows)", (long long)rows(o));

    later_checks(w, o);
    drv->close(w);
    drv->close(o);
    config_free(&s);
    printf("mariadb_chain: chained, unchained, idle and dropped transactions as they should be\n");
    return 0;
}
