/* Unit tests for core/db_sqlite.c: exec of single statements (kept prepared)
 * and of scripts, on an in-memory database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "db.h"

static int open_db(void **state)
{
    static struct settings s;
    memset(&s, 0, sizeof s);
    s.sqlite_path = ":memory:";
    s.sqlite_synchronous = "full";
    s.sqlite_busy_timeout = 1000;
    chatd_db *db = NULL;
    char err[256] = "";
    if (db_sqlite.open(&s, &db, err, sizeof err) != 0)
        fail_msg("open: %s", err);
    *state = db;
    return 0;
}

static int close_db(void **state)
{
    db_sqlite.close(*state);
    return 0;
}

static int64_t count_rows(chatd_db *db)
{
    chatd_stmt *st = db_sqlite.prepare(db, "SELECT count(*) FROM t");
    assert_non_null(st);
    assert_int_equal(db_sqlite.step(st), CHATD_ROW);
    int64_t n = db_sqlite.column_int(st, 0);
    db_sqlite.reset(st);
    return n;
}

/* The statements a batch runs per job, many times over: kept prepared, and
 * still right on every use. */
static void test_repeated_transaction_statements(void **state)
{
    chatd_db *db = *state;
    assert_int_equal(db_sqlite.exec(db, "CREATE TABLE t (x INTEGER); CREATE INDEX t_x ON t (x);"),
                     0);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(db_sqlite.begin(db, 1), 0);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(db_sqlite.exec(db, "SAVEPOINT job"), 0);
            assert_int_equal(db_sqlite.exec(db, "INSERT INTO t (x) VALUES (1)"), 0);
            if (i == 2) /* this job fails: only its own row goes */
                assert_int_equal(db_sqlite.exec(db, "ROLLBACK TO SAVEPOINT job"), 0);
            assert_int_equal(db_sqlite.exec(db, "RELEASE SAVEPOINT job"), 0);
        }
        assert_int_equal(db_sqlite.commit(db), 0);
        assert_int_equal(count_rows(db), 3 * (round + 1));
    }
    /* a rolled-back transaction leaves nothing, and the verbs still work after it */
    assert_int_equal(db_sqlite.begin(db, 1), 0);
    assert_int_equal(db_sqlite.exec(db, "INSERT INTO t (x) VALUES (2)"), 0);
    assert_int_equal(db_sqlite.rollback(db), 0);
    assert_int_equal(count_rows(db), 9);
}

static void test_errors_and_blank_statements(void **state)
{
    chatd_db *db = *state;
    assert_int_equal(db_sqlite.exec(db, "CREATE TABLE t (x INTEGER UNIQUE)"), 0);
    assert_int_equal(db_sqlite.exec(db, "INSERT INTO t (x) VALUES (7)"), 0);
    /* the same kept statement fails on a conflict, and works again after it */
    assert_int_equal(db_sqlite.exec(db, "INSERT INTO t (x) VALUES (7)"), CHATD_ECONFLICT);
    assert_true(db_sqlite.exec(db, "NOT SQL AT ALL") < 0);
    assert_true(db_sqlite.exec(db, "SELECT * FROM no_such_table") < 0);
    /* a statement whose text holds no SQL is nothing to do, as in a script */
    assert_int_equal(db_sqlite.exec(db, "-- only a comment"), 0);
    assert_int_equal(db_sqlite.exec(db, "   "), 0);
    assert_int_equal(db_sqlite.exec(db, "-- a comment; then nothing"), 0);
    assert_int_equal(count_rows(db), 1);
}

/* A store that cannot write is unavailable (503, retry later), not a bug. */
static void test_read_only_is_unavailable(void **state)
{
    chatd_db *db = *state;
    assert_int_equal(db_sqlite.exec(db, "CREATE TABLE t (x INTEGER)"), 0);
    assert_int_equal(db_sqlite.exec(db, "PRAGMA query_only = 1"), 0);
    assert_int_equal(db_sqlite.exec(db, "INSERT INTO t (x) VALUES (1)"), CHATD_EUNAVAIL);
    chatd_stmt *st = db_sqlite.prepare(db, "INSERT INTO t (x) VALUES (?)");
    assert_non_null(st);
    assert_int_equal(db_sqlite.bind_int(st, 1, 2), 0);
    assert_int_equal(db_sqlite.step(st), CHATD_EUNAVAIL);
    db_sqlite.reset(st);
    assert_int_equal(db_sqlite.exec(db, "PRAGMA query_only = 0"), 0);
    assert_int_equal(count_rows(db), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_repeated_transaction_statements, open_db, close_db),
        cmocka_unit_test_setup_teardown(test_errors_and_blank_statements, open_db, close_db),
        cmocka_unit_test_setup_teardown(test_read_only_is_unavailable, open_db, close_db),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
