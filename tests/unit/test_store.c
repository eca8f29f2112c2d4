/*
 * Unit tests for core/store/store.c: the job pools, group commit, retries,
 * batch splits, completions and the health check, over a fake SQL driver
 * that writes down every transaction verb it is asked for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "metrics.h"
#include "store.h"
#include "support.h"

/* ---- the fake driver ---- */

struct fake_stmt {
    struct chatd_stmt base;
    char sql[160];
    int stepped;
};

struct fake_db {
    struct chatd_db base;
    struct fake_stmt st;
    int savepoints;    /* taken in the transaction under way */
    char pending[256]; /* what its jobs wrote, not yet committed */
    size_t mark;       /* pending's length at the last savepoint */
};

static struct {
    pthread_mutex_t lock;
    char log[8192];      /* every verb, comma-separated */
    char committed[512]; /* the writes of every commit, comma-separated */
    int update_fails;    /* the health probe's UPDATE is refused */
    int commit_fails;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const struct db_driver fake_driver;
static struct db_driver fake_many;

static void append(char *buf, size_t size, const char *what)
{
    size_t n = strlen(buf);
    snprintf(buf + n, size - n, "%s%s", n ? "," : "", what);
}

static void note(const char *what)
{
    pthread_mutex_lock(&fake.lock);
    append(fake.log, sizeof fake.log, what);
    pthread_mutex_unlock(&fake.lock);
}

/* What the log holds, taken (the log starts again empty). */
static const char *take_log(void)
{
    static char copy[sizeof fake.log];
    pthread_mutex_lock(&fake.lock);
    memcpy(copy, fake.log, sizeof copy);
    fake.log[0] = '\0';
    pthread_mutex_unlock(&fake.lock);
    return copy;
}

#define assert_log(want) assert_string_equal(take_log(), (want))

static int fake_open(const struct settings *s, chatd_db **out, char *err, size_t errlen)
{
    (void)s, (void)err, (void)errlen;
    struct fake_db *d = calloc(1, sizeof *d);
    if (!d)
        return CHATD_ENOMEM;
    d->base.drv = &fake_driver;
    d->st.base.db = &d->base;
    *out = &d->base;
    return 0;
}

static int fake_many_open(const struct settings *s, chatd_db **out, char *err, size_t errlen)
{
    int rc = fake_open(s, out, err, errlen);
    if (rc == 0)
        (*out)->drv = &fake_many;
    return rc;
}

static void fake_close(chatd_db *db)
{
    free(db);
}

static int fake_exec(chatd_db *db, const char *sql)
{
    struct fake_db *d = (struct fake_db *)db;
    if (strncmp(sql, "CREATE TABLE IF NOT EXISTS schema_migrations", 44) == 0)
        return 0; /* the migrations' own table: not what the tests look at */
    note(sql);
    if (strcmp(sql, "SAVEPOINT job") == 0) {
        d->savepoints++;
        d->mark = strlen(d->pending);
    } else if (strcmp(sql, "ROLLBACK TO SAVEPOINT job") == 0) {
        d->pending[d->mark] = '\0';
    }
    return 0;
}

static int fake_begin(chatd_db *db, int write)
{
    struct fake_db *d = (struct fake_db *)db;
    note(write ? "BEGIN" : "BEGIN READ");
    d->savepoints = 0;
    d->pending[0] = '\0';
    d->mark = 0;
    return 0;
}

static int fake_commit(chatd_db *db)
{
    struct fake_db *d = (struct fake_db *)db;
    note("COMMIT");
    pthread_mutex_lock(&fake.lock);
    int fail = fake.commit_fails;
    if (!fail && d->pending[0])
        append(fake.committed, sizeof fake.committed, d->pending);
    pthread_mutex_unlock(&fake.lock);
    d->pending[0] = '\0';
    return fail ? CHATD_EUNAVAIL : 0;
}

static int fake_rollback(chatd_db *db)
{
    struct fake_db *d = (struct fake_db *)db;
    note("ROLLBACK");
    d->pending[0] = '\0';
    return 0;
}

static chatd_stmt *fake_prepare(chatd_db *db, const char *sql)
{
    struct fake_db *d = (struct fake_db *)db;
    snprintf(d->st.sql, sizeof d->st.sql, "%s", sql);
    d->st.stepped = 0;
    return &d->st.base;
}

static int fake_bind_int(chatd_stmt *st, int idx, int64_t v)
{
    (void)st, (void)idx, (void)v;
    return 0;
}

static int fake_bind_text(chatd_stmt *st, int idx, const char *s, size_t len)
{
    (void)st, (void)idx, (void)s, (void)len;
    return 0;
}

static int fake_bind_blob(chatd_stmt *st, int idx, const void *b, size_t len)
{
    (void)st, (void)idx, (void)b, (void)len;
    return 0;
}

static int fake_bind_null(chatd_stmt *st, int idx)
{
    (void)st, (void)idx;
    return 0;
}

static int fake_step(chatd_stmt *stmt)
{
    struct fake_stmt *st = (struct fake_stmt *)stmt;
    if (strcmp(st->sql, "SELECT 1") == 0)
        return st->stepped++ ? CHATD_DONE : CHATD_ROW;
    if (strncmp(st->sql, "UPDATE chatd_health", 19) == 0) {
        note("UPDATE chatd_health");
        pthread_mutex_lock(&fake.lock);
        int fail = fake.update_fails;
        pthread_mutex_unlock(&fake.lock);
        return fail ? CHATD_EUNAVAIL : CHATD_DONE;
    }
    return CHATD_DONE; /* the migrations' bookkeeping */
}

static int64_t fake_column_int(chatd_stmt *st, int col)
{
    (void)st, (void)col;
    return 0;
}

static const char *fake_column_text(chatd_stmt *st, int col, size_t *len)
{
    (void)st, (void)col;
    if (len)
        *len = 0;
    return NULL;
}

static int fake_column_is_null(chatd_stmt *st, int col)
{
    (void)st, (void)col;
    return 1;
}

static void fake_reset(chatd_stmt *st)
{
    (void)st;
}

static int64_t fake_zero(chatd_db *db)
{
    (void)db;
    return 0;
}

static const struct db_driver fake_driver = {
    .name = "fake",
    .open = fake_open,
    .close = fake_close,
    .exec = fake_exec,
    .begin = fake_begin,
    .commit = fake_commit,
    .rollback = fake_rollback,
    .prepare = fake_prepare,
    .bind_int = fake_bind_int,
    .bind_text = fake_bind_text,
    .bind_blob = fake_bind_blob,
    .bind_null = fake_bind_null,
    .step = fake_step,
    .column_int = fake_column_int,
    .column_text = fake_column_text,
    .column_is_null = fake_column_is_null,
    .reset = fake_reset,
    .last_insert_id = fake_zero,
    .changes = fake_zero,
    .max_writers = 1,
};

/* ---- jobs ---- */

struct tjob {
    const char *name;
    int result;         /* what run returns once no EBUSY/EUNAVAIL is left */
    int busy_left;      /* run answers CHATD_EBUSY this many times first */
    int unavail_left;   /* then CHATD_EUNAVAIL this many times */
    int busy_batched;   /* CHATD_EBUSY whenever another job shares its transaction */
    int runs;           /* worker thread; read after done */
    int saw_db;         /* run was given a connection */
    int status;         /* done's */
    int dones;          /* how many times done ran */
    pthread_t done_thr; /* where it ran */
};

static struct {
    struct event_base *base;
    struct settings s;
    struct store_backend *b;
    int dones; /* done() calls of every job */
    pthread_t loop;
    const char *driver; /* the backend's, "fake" when NULL */
} t;

static char sql_dir[64];

static int tjob_run(chatd_db *db, void *arg)
{
    struct tjob *j = arg;
    j->runs++;
    j->saw_db = db != NULL;
    char what[64];
    snprintf(what, sizeof what, "run %s", j->name);
    note(what);
    if (!db)
        return j->result; /* a CPU job */
    struct fake_db *d = (struct fake_db *)db;
    size_t n = strlen(d->pending);
    snprintf(d->pending + n, sizeof d->pending - n, "%s%s", n ? "," : "", j->name);
    if (j->busy_batched && d->savepoints > 1)
        return CHATD_EBUSY;
    if (j->busy_left > 0) {
        j->busy_left--;
        return CHATD_EBUSY;
    }
    if (j->unavail_left > 0) {
        j->unavail_left--;
        return CHATD_EUNAVAIL;
    }
    return j->result;
}

static void tjob_done(void *arg, int status)
{
    struct tjob *j = arg;
    j->status = status;
    j->dones++;
    j->done_thr = pthread_self();
    t.dones++;
}

static void submit(int flags, struct tjob *j)
{
    assert_int_equal(store_submit(t.b, flags, tjob_run, tjob_done, j), 0);
}

/* Run the loop until n more done() calls came. */
static void wait_dones(int n)
{
    int want = t.dones + n;
    RUN_UNTIL(t.base, t.dones >= want, 5000);
    assert_int_equal(t.dones, want);
}

static const char *take_committed(void)
{
    static char copy[sizeof fake.committed];
    pthread_mutex_lock(&fake.lock);
    memcpy(copy, fake.committed, sizeof copy);
    fake.committed[0] = '\0';
    pthread_mutex_unlock(&fake.lock);
    return copy;
}

#define assert_committed(want) assert_string_equal(take_committed(), (want))

/* ---- set-up ---- */

static int group_setup(void **state)
{
    (void)state;
    snprintf(sql_dir, sizeof sql_dir, "/tmp/chatd-store-XXXXXX");
    if (!mkdtemp(sql_dir))
        return -1;
    char fake_dir[96];
    snprintf(fake_dir, sizeof fake_dir, "%s/fake", sql_dir);
    if (mkdir(fake_dir, 0700) != 0) /* no migrations in it */
        return -1;
    snprintf(fake_dir, sizeof fake_dir, "%s/fakemany", sql_dir);
    if (mkdir(fake_dir, 0700) != 0)
        return -1;
    fake_many = fake_driver; /* as many writers as storage.mariadb_writers says */
    fake_many.name = "fakemany";
    fake_many.max_writers = 0;
    fake_many.no_savepoints = 1; /* as a server's driver: savepoints cost round trips */
    fake_many.open = fake_many_open;
    if (db_driver_add(&fake_many) < 0)
        return -1;
    return db_driver_add(&fake_driver);
}

static int group_teardown(void **state)
{
    (void)state;
    char fake_dir[96];
    snprintf(fake_dir, sizeof fake_dir, "%s/fake", sql_dir);
    rmdir(fake_dir);
    snprintf(fake_dir, sizeof fake_dir, "%s/fakemany", sql_dir);
    rmdir(fake_dir);
    rmdir(sql_dir);
    return 0;
}

static int start_store(void)
{
    char err[256] = "";
    t.loop = pthread_self();
    if (!(t.base = support_base()) || store_init(t.base, &t.s, sql_dir) < 0)
        return -1;
    if (!(t.b = store_backend_open(t.driver ? t.driver : "fake", err, sizeof err))) {
        fprintf(stderr, "store_backend_open: %s\n", err);
        return -1;
    }
    take_log();
    take_committed();
    return 0;
}

/* Defaults, with one worker per pool; each case sets what it needs, then
 * starts the store (the workers read the settings as they are then). */
static int setup(void **state)
{
    (void)state;
    char err[256];
    memset(&t, 0, sizeof t);
    if (config_load(NULL, NULL, 0, &t.s, err, sizeof err) < 0)
        return -1;
    t.s.storage_readers = 1;
    t.s.storage_cpu_workers = 1;
    fake.update_fails = fake.commit_fails = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (t.base) {
        store_shutdown();
        support_base_free(t.base);
    }
    config_free(&t.s);
    return 0;
}

#define START() assert_int_equal(start_store(), 0)

/* Long enough for a whole batch to be queued before the writer takes it:
 * the batch is taken at once when batch_max jobs are there. */
#define GATHER_US 500000

/* ---- the cases ---- */

static void test_driver_add(void **state)
{
    (void)state;
    START();
    assert_ptr_equal(db_driver_find("fake"), &fake_driver);
    assert_ptr_equal(db_driver_find("sqlite"), &db_sqlite);
    assert_ptr_equal(db_driver_find("mariadb"), &db_mariadb);
    assert_null(db_driver_find("nosuch"));
    /* a name already known, or none, is refused */
    assert_int_equal(db_driver_add(&fake_driver), CHATD_EINVAL);
    static const struct db_driver as_sqlite = {.name = "sqlite"}, unnamed = {0},
                                  blank = {.name = ""};
    assert_int_equal(db_driver_add(&as_sqlite), CHATD_EINVAL);
    assert_int_equal(db_driver_add(&unnamed), CHATD_EINVAL);
    assert_int_equal(db_driver_add(&blank), CHATD_EINVAL);
    assert_int_equal(db_driver_add(NULL), CHATD_EINVAL);
    assert_ptr_equal(db_driver_find("sqlite"), &db_sqlite);
    /* the table holds DB_DRIVERS_MAX: sqlite, mariadb, fakemany, fake and these */
    static struct db_driver more[DB_DRIVERS_MAX];
    static char names[DB_DRIVERS_MAX][8];
    for (int i = 0; i < DB_DRIVERS_MAX; i++) {
        snprintf(names[i], sizeof names[i], "more%d", i);
        more[i].name = names[i];
        assert_int_equal(db_driver_add(&more[i]), i < DB_DRIVERS_MAX - 4 ? 0 : CHATD_ELIMIT);
    }
    assert_ptr_equal(db_driver_find("more0"), &more[0]);
    assert_null(db_driver_find(names[DB_DRIVERS_MAX - 4]));
    /* a backend of an unknown driver is refused with a reason */
    char err[128] = "";
    assert_null(store_backend_open("nosuch", err, sizeof err));
    assert_non_null(strstr(err, "nosuch"));
    assert_ptr_equal(store_backend_open("fake", err, sizeof err), t.b);
    assert_string_equal(store_backend_name(t.b), "fake");
}

#define SP_OK(name) "SAVEPOINT job,run " name ",RELEASE SAVEPOINT job"

/* Write jobs queued together share one transaction and one commit, each in
 * a savepoint of its own. */
static void test_group_commit(void **state)
{
    (void)state;
    t.s.storage_batch_max = 4;
    t.s.storage_batch_wait_us = GATHER_US;
    START();
    struct tjob j[4] = {{.name = "a"}, {.name = "b"}, {.name = "c"}, {.name = "d"}};
    for (int i = 0; i < 4; i++)
        submit(CHATD_JOB_WRITE, &j[i]);
    wait_dones(4);
    assert_log("BEGIN," SP_OK("a") "," SP_OK("b") "," SP_OK("c") "," SP_OK("d") ",COMMIT");
    assert_committed("a,b,c,d");
    for (int i = 0; i < 4; i++) {
        assert_int_equal(j[i].status, 0);
        assert_int_equal(j[i].runs, 1);
    }
    assert_int_equal(store_in_flight(), 0);
}

/* A batch holds storage.batch_max jobs at most; the rest commit after. */
static void test_batch_max(void **state)
{
    (void)state;
    t.s.storage_batch_max = 2;
    t.s.storage_batch_wait_us = 100000;
    START();
    struct tjob j[5] = {{.name = "a"}, {.name = "b"}, {.name = "c"}, {.name = "d"}, {.name = "e"}};
    for (int i = 0; i < 5; i++)
        submit(CHATD_JOB_WRITE, &j[i]);
    wait_dones(5);
    assert_log("BEGIN," SP_OK("a") "," SP_OK("b") ",COMMIT,BEGIN," SP_OK("c") "," SP_OK(
        "d") ",COMMIT,BEGIN," SP_OK("e") ",COMMIT");
    assert_committed("a,b,c,d,e");
}

/* A job that fails is rolled back to its own savepoint; the others commit. */
static void test_failing_job_alone(void **state)
{
    (void)state;
    t.s.storage_batch_max = 3;
    t.s.storage_batch_wait_us = GATHER_US;
    START();
    struct tjob j[3] = {{.name = "a"}, {.name = "b", .result = CHATD_ECONFLICT}, {.name = "c"}};
    for (int i = 0; i < 3; i++)
        submit(CHATD_JOB_WRITE, &j[i]);
    wait_dones(3);
    assert_log(
        "BEGIN," SP_OK("a") ",SAVEPOINT job,run b,ROLLBACK TO SAVEPOINT job,RELEASE SAVEPOINT "
                            "job," SP_OK("c") ",COMMIT");
    assert_committed("a,c");
    assert_int_equal(j[0].status, 0);
    assert_int_equal(j[1].status, CHATD_ECONFLICT);
    assert_int_equal(j[2].status, 0);
}

/* A batch that conflicts twice is split: each job commits on its own. */
static void test_batch_split(void **state)
{
    (void)state;
    t.s.storage_batch_max = 3;
    t.s.storage_batch_wait_us = GATHER_US;
    START();
    struct tjob j[3] = {{.name = "a"}, {.name = "b", .busy_batched = 1}, {.name = "c"}};
    for (int i = 0; i < 3; i++)
        submit(CHATD_JOB_WRITE, &j[i]);
    wait_dones(3);
    assert_log(
        "BEGIN," SP_OK("a") ",SAVEPOINT job,run b,ROLLBACK,"
                            "BEGIN," SP_OK("a") ",SAVEPOINT job,run b,ROLLBACK,"
                                                "BEGIN," SP_OK("a") ",COMMIT,BEGIN," SP_OK(
                                                    "b") ",COMMIT,BEGIN," SP_OK("c") ",COMMIT");
    assert_committed("a,b,c");
    int runs[3] = {3, 3, 1};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(j[i].status, 0);
        assert_int_equal(j[i].runs, runs[i]);
    }
}

/* A lock conflict is retried (storage.retries: 5). */
static void test_retries(void **state)
{
    (void)state;
    t.s.storage_batch_max = 1;
    START();
    struct tjob j = {.name = "a", .busy_left = 2};
    submit(CHATD_JOB_WRITE, &j);
    wait_dones(1);
    assert_int_equal(j.status, 0);
    assert_int_equal(j.runs, 3);
    assert_log("BEGIN,SAVEPOINT job,run a,ROLLBACK,BEGIN,SAVEPOINT job,run a,ROLLBACK,"
               "BEGIN," SP_OK("a") ",COMMIT");
    assert_committed("a");
}

/* Past storage.retries, a conflict is an unavailable store: nothing written. */
static void test_retries_exhausted(void **state)
{
    (void)state;
    t.s.storage_batch_max = 1;
    t.s.storage_retries = 1;
    START();
    struct tjob k = {.name = "k", .busy_left = 2};
    submit(CHATD_JOB_WRITE, &k);
    wait_dones(1);
    assert_int_equal(k.status, CHATD_EUNAVAIL);
    assert_int_equal(k.runs, 2);
    assert_log("BEGIN,SAVEPOINT job,run k,ROLLBACK,BEGIN,SAVEPOINT job,run k,ROLLBACK");
    assert_committed("");
}

/* A batch whose commit fails wrote nothing: every job hears UNAVAILABLE. */
static void test_commit_failure(void **state)
{
    (void)state;
    t.s.storage_batch_max = 2;
    t.s.storage_batch_wait_us = GATHER_US;
    fake.commit_fails = 1;
    START();
    struct tjob j[2] = {{.name = "a"}, {.name = "b"}};
    submit(CHATD_JOB_WRITE, &j[0]);
    submit(CHATD_JOB_WRITE, &j[1]);
    wait_dones(2);
    assert_log("BEGIN," SP_OK("a") "," SP_OK("b") ",COMMIT,ROLLBACK");
    assert_committed("");
    assert_int_equal(j[0].status, CHATD_EUNAVAIL);
    assert_int_equal(j[1].status, CHATD_EUNAVAIL);
}

static pthread_t posted_on;
static int posted;

static void on_posted(void *arg)
{
    (void)arg;
    posted_on = pthread_self();
    posted++;
}

static void *poster(void *arg)
{
    (void)arg;
    store_post(on_posted, NULL);
    return NULL;
}

/* Every done() runs once, on the loop thread, whatever pool ran the job;
 * store_post from any thread runs on the loop too. */
static void test_completions(void **state)
{
    (void)state;
    t.s.storage_batch_max = 2;
    t.s.storage_batch_wait_us = GATHER_US;
    START();
    struct tjob w[2] = {{.name = "w1"}, {.name = "w2", .result = CHATD_ENOTFOUND}};
    struct tjob r[2] = {{.name = "r1"}, {.name = "r2"}};
    struct tjob c[2] = {{.name = "c1", .result = 7}, {.name = "c2"}};
    for (int i = 0; i < 2; i++) {
        submit(CHATD_JOB_WRITE, &w[i]);
        submit(CHATD_JOB_READ, &r[i]);
        submit(CHATD_JOB_CPU, &c[i]);
    }
    assert_int_equal(store_in_flight(), 6);
    assert_int_equal(t.dones, 0); /* nothing is told inside store_submit */
    wait_dones(6);
    support_run_for(t.base, 50); /* and nothing twice */
    assert_int_equal(t.dones, 6);
    struct tjob *all[6] = {&w[0], &w[1], &r[0], &r[1], &c[0], &c[1]};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(all[i]->dones, 1);
        assert_int_equal(all[i]->runs, 1);
        assert_true(pthread_equal(all[i]->done_thr, t.loop));
        assert_int_equal(all[i]->saw_db, i < 4);
    }
    assert_int_equal(w[1].status, CHATD_ENOTFOUND);
    assert_int_equal(c[0].status, 7); /* a CPU job's status is its own */
    assert_int_equal(store_in_flight(), 0);
    assert_int_equal(store_queue_depth(), 0);
    take_log();

    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, poster, NULL), 0);
    pthread_join(thr, NULL);
    assert_int_equal(posted, 0); /* not on the thread that posted */
    RUN_UNTIL(t.base, posted > 0, 2000);
    assert_int_equal(posted, 1);
    assert_true(pthread_equal(posted_on, t.loop));
    posted = 0;
}

/* Jobs without a run, or database jobs without a backend, are refused. */
static void test_submit_refused(void **state)
{
    (void)state;
    START();
    struct tjob j = {.name = "x"};
    assert_int_equal(store_submit(t.b, CHATD_JOB_WRITE, NULL, tjob_done, &j), CHATD_EINVAL);
    assert_int_equal(store_submit(NULL, CHATD_JOB_WRITE, tjob_run, tjob_done, &j), CHATD_EINVAL);
    assert_int_equal(store_submit(NULL, CHATD_JOB_READ, tjob_run, tjob_done, &j), CHATD_EINVAL);
    assert_int_equal(store_in_flight(), 0);
    support_run_for(t.base, 20);
    assert_int_equal(j.dones, 0);
    assert_int_equal(j.runs, 0);
}

/* A read that found the backend unavailable runs once more, at once; a
 * read's lock conflicts are retried like a write's. */
static void test_read_retry(void **state)
{
    (void)state;
    START();
    struct tjob once = {.name = "once", .unavail_left = 1};
    submit(CHATD_JOB_READ, &once);
    wait_dones(1);
    assert_int_equal(once.status, 0);
    assert_int_equal(once.runs, 2);

    struct tjob down = {.name = "down", .unavail_left = 100};
    submit(CHATD_JOB_READ, &down);
    wait_dones(1);
    assert_int_equal(down.status, CHATD_EUNAVAIL);
    assert_int_equal(down.runs, 2);

    struct tjob busy = {.name = "busy", .busy_left = 2};
    submit(CHATD_JOB_READ, &busy);
    wait_dones(1);
    assert_int_equal(busy.status, 0);
    assert_int_equal(busy.runs, 3);
    const char *log = take_log();
    /* each attempt in a read transaction of its own */
    int begins = 0;
    for (const char *p = log; (p = strstr(p, "BEGIN READ")); p++)
        begins++;
    assert_int_equal(begins, 7);
    assert_null(strstr(log, "SAVEPOINT"));
}

static int health_ok, health_answers;

static void on_health(void *arg, int ok)
{
    (void)arg;
    health_ok = ok;
    health_answers++;
}

/* One health check: its answer, and whether it tried a write. */
static int check_health(int *wrote)
{
    health_answers = 0;
    health_ok = -1;
    assert_int_equal(store_health_check(on_health, NULL), 0);
    RUN_UNTIL(t.base, health_answers > 0, 5000);
    support_run_for(t.base, 20);
    assert_int_equal(health_answers, 1);
    *wrote = strstr(take_log(), "UPDATE chatd_health") != NULL;
    return health_ok;
}

/* Healthy answers reads; after a write found the store unavailable, the
 * check also writes, and is unhealthy until that write commits. */
static void test_health(void **state)
{
    (void)state;
    START();
    int wrote;
    assert_int_equal(check_health(&wrote), 1);
    assert_false(wrote);

    /* a write that fails for another reason says nothing of the store */
    struct tjob conflict = {.name = "conflict", .result = CHATD_ECONFLICT};
    submit(CHATD_JOB_WRITE, &conflict);
    wait_dones(1);
    assert_int_equal(check_health(&wrote), 1);
    assert_false(wrote);

    struct tjob lost = {.name = "lost", .result = CHATD_EUNAVAIL};
    submit(CHATD_JOB_WRITE, &lost);
    wait_dones(1);
    assert_int_equal(lost.status, CHATD_EUNAVAIL);
    take_log();

    fake.update_fails = 1;
    assert_int_equal(check_health(&wrote), 0);
    assert_true(wrote);
    assert_int_equal(check_health(&wrote), 0); /* still failing: tried again */
    assert_true(wrote);

    fake.update_fails = 0;
    assert_int_equal(check_health(&wrote), 1);
    assert_true(wrote);
    assert_int_equal(check_health(&wrote), 1); /* healthy again: reads only */
    assert_false(wrote);
}

/* The store starts again after a shutdown, every pool with it. */
static void test_restart(void **state)
{
    (void)state;
    START();
    store_shutdown();
    support_base_free(t.base);
    assert_int_equal(start_store(), 0);
    support_run_for(t.base, 50); /* the workers are up and waiting */
    struct tjob w = {.name = "w"}, r = {.name = "r"}, c = {.name = "c"};
    submit(CHATD_JOB_WRITE, &w);
    submit(CHATD_JOB_READ, &r);
    submit(CHATD_JOB_CPU, &c);
    wait_dones(3);
    assert_int_equal(w.dones + r.dones + c.dones, 3);
}

/* Jobs still queued at shutdown run, and their done() with them. */
static void test_shutdown_completes(void **state)
{
    (void)state;
    t.s.storage_batch_max = 8;
    t.s.storage_batch_wait_us = GATHER_US;
    START();
    struct tjob j[3] = {{.name = "a"}, {.name = "b"}, {.name = "c"}};
    for (int i = 0; i < 3; i++)
        submit(CHATD_JOB_WRITE, &j[i]);
    store_shutdown(); /* the writer stops waiting for more, commits, and goes */
    for (int i = 0; i < 3; i++)
        assert_int_equal(j[i].dones, 1);
    assert_committed("a,b,c");
    assert_int_equal(store_in_flight(), 0);
    support_base_free(t.base);
    assert_int_equal(start_store(), 0); /* for the teardown */
}

/* ---- keyed writes over several writers ---- */

#define KEYED_N 60

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int order[KEYED_N]; /* the keyed jobs' indexes, in the order they ran */
    int n;
    int b_ran; /* the job of the other key ran */
} kt = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

struct kjob {
    int index;
    int status, dones;
};

static int kjob_run(chatd_db *db, void *arg)
{
    (void)db;
    struct kjob *j = arg;
    usleep((unsigned)(j->index % 3) * 300); /* uneven work, so writers would overtake */
    pthread_mutex_lock(&kt.lock);
    kt.order[kt.n++] = j->index;
    pthread_mutex_unlock(&kt.lock);
    return 0;
}

static void kjob_done(void *arg, int status)
{
    struct kjob *j = arg;
    j->status = status;
    j->dones++;
    t.dones++;
}

/* Start a backend of n writers, each taking one job at a time. */
static void start_writers(int n)
{
    t.driver = "fakemany";
    t.s.mariadb_writers = n;
    t.s.storage_batch_max = 1;
    t.s.storage_batch_wait_us = 0;
    START();
}

/* Writes of one key run in the order they came, whichever of several
 * writers is free; unkeyed writes in between go to any writer. */
static void test_keyed_order(void **state)
{
    (void)state;
    start_writers(4);
    kt.n = 0;
    static struct kjob keyed[KEYED_N];
    static struct tjob plain[KEYED_N];
    for (int i = 0; i < KEYED_N; i++) {
        keyed[i] = (struct kjob){.index = i};
        plain[i] = (struct tjob){.name = "p"};
        assert_int_equal(
            store_submit_keyed(t.b, CHATD_JOB_WRITE, 7, kjob_run, kjob_done, &keyed[i]), 0);
        assert_int_equal(store_submit(t.b, CHATD_JOB_WRITE, tjob_run, tjob_done, &plain[i]), 0);
    }
    wait_dones(2 * KEYED_N);
    assert_int_equal(kt.n, KEYED_N);
    for (int i = 0; i < KEYED_N; i++) {
        assert_int_equal(kt.order[i], i);
        assert_int_equal(keyed[i].dones, 1);
        assert_int_equal(keyed[i].status, 0);
        assert_int_equal(plain[i].dones, 1);
    }
}

/* In one batch, keyed jobs run in key order, each key's in the order they
 * came, and a job without a key stays where it was: the keyed jobs on either
 * side of it are ordered apart. Every batch then takes its row locks in one
 * order and none deadlocks another. */
static void test_batch_in_key_order(void **state)
{
    (void)state;
    t.driver = "fakemany";
    t.s.mariadb_writers = 1;
    t.s.storage_batch_max = 8;           /* the eight jobs below, */
    t.s.storage_batch_wait_us = 2000000; /* gathered into one batch */
    START();
    kt.n = 0;
    static const uint64_t keys[8] = {9, 4, 9, 4, 0, 3, 1, 3};
    static struct kjob j[8];
    for (int i = 0; i < 8; i++) {
        j[i] = (struct kjob){.index = i};
        assert_int_equal(
            store_submit_keyed(t.b, CHATD_JOB_WRITE, keys[i], kjob_run, kjob_done, &j[i]), 0);
    }
    wait_dones(8);
    static const int want[8] = {1, 3, 0, 2, 4, 6, 5, 7};
    assert_int_equal(kt.n, 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(kt.order[i], want[i]);
        assert_int_equal(j[i].dones, 1);
        assert_int_equal(j[i].status, 0);
    }
}

/* A: waits (up to 3 s) for the job of another key; B: lets it go on. */
static int wait_for_b(chatd_db *db, void *arg)
{
    (void)db, (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3;
    pthread_mutex_lock(&kt.lock);
    while (!kt.b_ran && pthread_cond_timedwait(&kt.cond, &kt.lock, &until) == 0)
        ;
    int ok = kt.b_ran;
    pthread_mutex_unlock(&kt.lock);
    return ok ? 0 : CHATD_EINTERNAL;
}

static int release_a(chatd_db *db, void *arg)
{
    (void)db, (void)arg;
    pthread_mutex_lock(&kt.lock);
    kt.b_ran = 1;
    pthread_cond_broadcast(&kt.cond);
    pthread_mutex_unlock(&kt.lock);
    return 0;
}

/* Different keys run side by side: a job of one key that waits for a job
 * of another submitted after it is not stuck behind it. */
static void test_keys_in_parallel(void **state)
{
    (void)state;
    start_writers(2);
    kt.b_ran = 0;
    struct kjob a = {0}, b = {0};
    assert_int_equal(store_submit_keyed(t.b, CHATD_JOB_WRITE, 2, wait_for_b, kjob_done, &a), 0);
    assert_int_equal(store_submit_keyed(t.b, CHATD_JOB_WRITE, 3, release_a, kjob_done, &b), 0);
    wait_dones(2);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
}

/* Without savepoints a failing job takes the transaction back, and the batch
 * runs again without it: what the others wrote commits once, its failure
 * stands, and it is not run again. */
static void test_failing_job_without_savepoints(void **state)
{
    (void)state;
    t.driver = "fakemany";
    t.s.mariadb_writers = 1;
    t.s.storage_batch_max = 3;
    t.s.storage_batch_wait_us = GATHER_US;
    START();
    struct tjob j[3] = {{.name = "a"}, {.name = "b", .result = CHATD_ECONFLICT}, {.name = "c"}};
    for (int i = 0; i < 3; i++)
        submit(CHATD_JOB_WRITE, &j[i]);
    wait_dones(3);
    assert_log("BEGIN,run a,run b,ROLLBACK,BEGIN,run a,run c,COMMIT");
    assert_committed("a,c");
    assert_int_equal(j[0].status, 0);
    assert_int_equal(j[1].status, CHATD_ECONFLICT);
    assert_int_equal(j[2].status, 0);
    assert_int_equal(j[0].runs, 2);
    assert_int_equal(j[1].runs, 1);
    assert_int_equal(j[2].runs, 1);
    /* and a batch of one that fails writes nothing */
    struct tjob lone = {.name = "x", .result = CHATD_EFORBIDDEN};
    submit(CHATD_JOB_WRITE, &lone);
    wait_dones(1);
    assert_log("BEGIN,run x,ROLLBACK");
    assert_committed("");
    assert_int_equal(lone.status, CHATD_EFORBIDDEN);
}

/* ---- write jobs run together (store_batch_register) ---- */

/* The run_batch of tjob_run: writes what each job would; a job whose result
 * is negative writes nothing. One job with busy_left makes the whole call
 * transient; one with result CHATD_EINTERNAL makes it fail for all. */
static int tjob_batch(chatd_db *db, void *const *args, int *status, size_t n)
{
    char what[128] = "batch ";
    for (size_t i = 0; i < n; i++) {
        struct tjob *j = args[i];
        size_t len = strlen(what);
        snprintf(what + len, sizeof what - len, "%s%s", i ? "+" : "", j->name);
    }
    note(what);
    for (size_t i = 0; i < n; i++) {
        struct tjob *j = args[i];
        if (j->busy_left > 0) {
            j->busy_left--;
            return CHATD_EBUSY;
        }
        if (j->result == CHATD_EINTERNAL)
            return CHATD_EINTERNAL;
    }
    struct fake_db *d = (struct fake_db *)db;
    for (size_t i = 0; i < n; i++) {
        struct tjob *j = args[i];
        status[i] = j->result;
        size_t len = strlen(d->pending);
        if (j->result == 0)
            snprintf(d->pending + len, sizeof d->pending - len, "%s%s", len ? "," : "", j->name);
    }
    return 0;
}

static int tjob_run_batch_other(chatd_db *db, void *const *args, int *status, size_t n)
{
    return tjob_batch(db, args, status, n);
}

/* Another run, so that its jobs are not of tjob_run's batches. */
static int tjob_run_alone(chatd_db *db, void *arg)
{
    return tjob_run(db, arg);
}

static void start_batching(const char *driver, int batch_max)
{
    t.driver = driver;
    t.s.mariadb_writers = 1;
    t.s.storage_batch_max = batch_max;
    t.s.storage_batch_wait_us = GATHER_US;
    START();
    assert_int_equal(store_batch_register(tjob_run, tjob_batch), 0);
    assert_int_equal(store_batch_register(tjob_run, tjob_batch), 0); /* the same again */
    assert_int_equal(store_batch_register(tjob_run, tjob_run_batch_other), CHATD_EINVAL);
    assert_int_equal(store_batch_register(NULL, tjob_batch), CHATD_EINVAL);
}

/* A batch's consecutive jobs of one run go to its run_batch in one call, in
 * their order; a job the call fails keeps its status and the others commit
 * without a rollback; a job of another run in between parts two calls; a
 * lone job runs by run(). */
static void test_run_batch(void **state)
{
    (void)state;
    start_batching("fakemany", 6);
    struct tjob j[6] = {{.name = "a"}, {.name = "b", .result = CHATD_EFORBIDDEN},
                        {.name = "c"}, {.name = "m"},
                        {.name = "d"}, {.name = "e"}};
    for (int i = 0; i < 6; i++)
        assert_int_equal(store_submit(t.b, CHATD_JOB_WRITE, i == 3 ? tjob_run_alone : tjob_run,
                                      tjob_done, &j[i]),
                         0);
    wait_dones(6);
    assert_log("BEGIN,batch a+b+c,run m,batch d+e,COMMIT");
    assert_committed("a,c,m,d,e");
    assert_int_equal(j[1].status, CHATD_EFORBIDDEN);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(j[i].dones, 1);
        assert_int_equal(j[i].runs, i == 3);
        if (i != 1)
            assert_int_equal(j[i].status, 0);
    }
    struct tjob lone = {.name = "x"};
    submit(CHATD_JOB_WRITE, &lone);
    wait_dones(1);
    assert_log("BEGIN,run x,COMMIT");
}

/* A run_batch that fails for all takes the transaction back, and each job
 * runs alone by run(); one that is transient is retried as it is. */
static void test_run_batch_fails(void **state)
{
    (void)state;
    start_batching("fakemany", 3);
    struct tjob j[3] = {{.name = "a"}, {.name = "b", .result = CHATD_EINTERNAL}, {.name = "c"}};
    for (int i = 0; i < 3; i++)
        submit(CHATD_JOB_WRITE, &j[i]);
    wait_dones(3);
    assert_log("BEGIN,batch a+b+c,ROLLBACK,BEGIN,run a,run b,ROLLBACK,BEGIN,run a,run c,COMMIT");
    assert_committed("a,c");
    assert_int_equal(j[1].status, CHATD_EINTERNAL);
    struct tjob k[2] = {{.name = "p", .busy_left = 1}, {.name = "q"}};
    submit(CHATD_JOB_WRITE, &k[0]);
    submit(CHATD_JOB_WRITE, &k[1]);
    wait_dones(2);
    assert_log("BEGIN,batch p+q,ROLLBACK,BEGIN,batch p+q,COMMIT");
    assert_committed("p,q");
}

/* With savepoints the call has one of its own: a failure for all rolls back
 * to it, and the jobs run again alone in that transaction. */
static void test_run_batch_savepoints(void **state)
{
    (void)state;
    start_batching("fake", 3);
    struct tjob j[3] = {{.name = "a"}, {.name = "b", .result = CHATD_EINTERNAL}, {.name = "c"}};
    for (int i = 0; i < 3; i++)
        submit(CHATD_JOB_WRITE, &j[i]);
    wait_dones(3);
    assert_log("BEGIN,SAVEPOINT job,batch a+b+c,ROLLBACK TO SAVEPOINT job,RELEASE SAVEPOINT job,"
               "SAVEPOINT job,run a,RELEASE SAVEPOINT job,SAVEPOINT job,run b,ROLLBACK TO "
               "SAVEPOINT job,RELEASE SAVEPOINT job,SAVEPOINT job,run c,RELEASE SAVEPOINT job,"
               "COMMIT");
    assert_committed("a,c");
}

/* A keyless job submitted CHATD_JOB_UNORDERED does not part the keyed jobs
 * around it: it runs first, and they all in key order. */
static void test_unordered_in_key_order(void **state)
{
    (void)state;
    t.driver = "fakemany";
    t.s.mariadb_writers = 1;
    t.s.storage_batch_max = 5;
    t.s.storage_batch_wait_us = 2000000;
    START();
    kt.n = 0;
    static const uint64_t keys[5] = {9, 4, 0, 3, 9};
    static struct kjob j[5];
    for (int i = 0; i < 5; i++) {
        j[i] = (struct kjob){.index = i};
        int flags = CHATD_JOB_WRITE | (keys[i] ? 0 : CHATD_JOB_UNORDERED);
        assert_int_equal(store_submit_keyed(t.b, flags, keys[i], kjob_run, kjob_done, &j[i]), 0);
    }
    wait_dones(5);
    static const int want[5] = {2, 3, 1, 0, 4};
    assert_int_equal(kt.n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(kt.order[i], want[i]);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_driver_add),
        T(test_group_commit),
        T(test_batch_max),
        T(test_failing_job_alone),
        T(test_batch_split),
        T(test_retries),
        T(test_retries_exhausted),
        T(test_commit_failure),
        T(test_completions),
        T(test_submit_refused),
        T(test_read_retry),
        T(test_health),
        T(test_restart),
        T(test_shutdown_completes),
        T(test_keyed_order),
        T(test_keys_in_parallel),
        T(test_batch_in_key_order),
        T(test_failing_job_without_savepoints),
        T(test_run_batch),
        T(test_run_batch_fails),
        T(test_run_batch_savepoints),
        T(test_unordered_in_key_order),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    metrics_free(); /* once: the counters' cells are cached for the process's life */
    return failed;
}
