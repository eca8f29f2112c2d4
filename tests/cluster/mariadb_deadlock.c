/*
 * The MariaDB driver after a locking read that a deadlock ends once the
 * result has begun: two connections lock rows of one table in opposite
 * orders, InnoDB rolls one back, and that one must then run the same
 * statement again at once and get its rows (the driver's handle of a
 * statement whose result ended in an error cannot be reused: the library
 * would wait for the rest of the result until mariadb.io_timeout).
 *
 * Run by test_mariadb_driver.py against a real MariaDB; the arguments are
 * chatd settings (mariadb.port=..., mariadb.database=..., ...). Exit 0 when
 * every check holds, 1 with a line on stderr otherwise.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#define TEST_NAME "mariadb_deadlock"
#include "driver_test.h"

/* Run a locking read of ids; 0 with their count in *rows, or the error. */
static int lock_rows(chatd_db *db, const char *sql, int *rows)
{
    chatd_stmt *st = drv->prepare(db, sql);
    if (!st)
        return CHATD_EINTERNAL;
    int rc;
    *rows = 0;
    while ((rc = drv->step(st)) == CHATD_ROW)
        (*rows)++;
    drv->reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

static const char *const LOW_FIRST =
    "SELECT id FROM dl WHERE id IN (1, 2, 3) ORDER BY id FOR UPDATE";
static const char *const HIGH_FIRST = "SELECT id FROM dl WHERE id IN (3, 4) ORDER BY id FOR UPDATE";
static const char *const THEN_LOW = "SELECT id FROM dl WHERE id IN (1, 2) ORDER BY id FOR UPDATE";

struct side {
    chatd_db *db;
    const char *sql;
    int rc, rows;
};

static void *run_side(void *arg)
{
    struct side *sd = arg;
    sd->rc = lock_rows(sd->db, sd->sql, &sd->rows);
    return NULL;
}

/* The connection InnoDB rolled back: rolled back here too, then the same
 * statement again, in a new transaction, answered well within the timeout. */
static void run_again(struct side *sd, int expect_rows)
{
    drv->rollback(sd->db);
    int64_t t0 = clock_now_us();
    int rows = 0;
    int rc = drv->begin(sd->db, 1);
    if (rc == 0)
        rc = lock_rows(sd->db, sd->sql, &rows);
    if (rc == 0)
        rc = drv->commit(sd->db);
    double took = (double)(clock_now_us() - t0) / 1e6;
    if (rc != 0)
        FAIL("the statement again after the deadlock: error %d after %.2f s", rc, took);
    if (took > (double)s.mariadb_io_timeout / 2)
        FAIL("the statement again after the deadlock took %.2f s", took);
    if (rows != expect_rows)
        FAIL("the statement again after the deadlock: %d rows, not %d", rows, expect_rows);
}

int main(int argc, char **argv)
{
    driver_setup(argc, argv);
    chatd_db *setup = open_db();
    if (drv->exec(setup, "CREATE TABLE IF NOT EXISTS dl (id BIGINT PRIMARY KEY) ENGINE=InnoDB") <
            0 ||
        drv->exec(setup, "DELETE FROM dl") < 0 ||
        drv->exec(setup, "INSERT INTO dl (id) VALUES (1), (2), (3), (4)") < 0)
        FAIL("cannot make the table");
    drv->close(setup);

    int victims = 0;
    for (int round = 0; round < 3; round++) {
        struct side a = {open_db(), HIGH_FIRST, 0, 0}, b = {open_db(), LOW_FIRST, 0, 0};
        /* a holds 3 and 4; b takes 1 and 2, then waits for 3 with its
         * result begun; a asks for 1: one of them is the deadlock's victim */
        if (drv->begin(a.db, 1) < 0 || lock_rows(a.db, HIGH_FIRST, &a.rows) < 0 || a.rows != 2)
            FAIL("the first locks");
        pthread_t t;
        if (drv->begin(b.db, 1) < 0 || pthread_create(&t, NULL, run_side, &b) != 0)
            FAIL("the second transaction");
        struct timespec pause = {0, 300 * 1000000L};
        nanosleep(&pause, NULL);
        a.sql = THEN_LOW;
        run_side(&a);
        pthread_join(t, NULL);
        if ((a.rc == CHATD_EBUSY) == (b.rc == CHATD_EBUSY))
            FAIL("round %d: not one victim (statuses %d and %d)", round, a.rc, b.rc);
        struct side *victim = a.rc == CHATD_EBUSY ? &a : &b, *winner = victim == &a ? &b : &a;
        if (winner->rc != 0 || drv->commit(winner->db) < 0)
            FAIL("round %d: the other transaction failed (%d)", round, winner->rc);
        run_again(victim, victim == &a ? 2 : 3);
        victims++;
        drv->close(a.db);
        drv->close(b.db);
    }
    config_free(&s);
    printf("mariadb_deadlock: %d deadlocks, each victim answered at once after it\n", victims);
    return 0;
}
