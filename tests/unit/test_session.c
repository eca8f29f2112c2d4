/*
 * Unit tests for core/session/session.c on the SQLite store (a database in a
 * temporary folder, migrated from the repository's sql/): tokens, lookups,
 * ends that close WebSockets (4001), refreshes, the TTL's sweep, and the
 * sessions loaded back at start.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/bufferevent.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "session.h"
#include "store.h"
#include "support.h"
#include "ws.h"

#define MAX_CLIENTS 8

static struct {
    struct event_base *base;
    struct settings s;
    struct store_backend *b;
    char dir[64];
    struct client *c[MAX_CLIENTS];
    struct bufferevent *end[MAX_CLIENTS];
    int n;
    int closed; /* closes told */
} t;

static void on_text(void *user, const char *data, size_t len)
{
    (void)user, (void)data, (void)len;
}

static void on_closed(void *user)
{
    session_detach(user);
    t.closed++;
}

static int setup(void **state)
{
    (void)state;
    memset(&t, 0, sizeof t);
    snprintf(t.dir, sizeof t.dir, "/tmp/chatd-session-XXXXXX");
    if (!mkdtemp(t.dir))
        return -1;
    char data_dir[96], err[256];
    snprintf(data_dir, sizeof data_dir, "server.data_dir=%s", t.dir);
    const char *const ov[] = {data_dir, "session.ttl=3600"};
    if (config_load(NULL, ov, 2, &t.s, err, sizeof err) < 0) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    t.s.storage_readers = 1;
    t.s.storage_cpu_workers = 1;
    const struct conn_limits cl = {.max_connections = 100, .max_per_addr = 100, .sweep_ms = 1000};
    const struct ws_limits wl = {.max_message = 4096,
                                 .max_outbuf = 1 << 20,
                                 .ping_interval_ms = 30000,
                                 .idle_timeout_ms = 75000};
    const struct ws_events ev = {.text = on_text, .closed = on_closed};
    if (!(t.base = support_base()) || conn_init(t.base, &cl) < 0 || ws_init(t.base, &wl, &ev) < 0 ||
        store_init(t.base, &t.s, CHATD_SOURCE_SQL_DIR) < 0)
        return -1;
    if (!(t.b = store_backend_open("sqlite", err, sizeof err))) {
        fprintf(stderr, "store: %s\n", err);
        return -1;
    }
    return session_init(t.base, &t.s, t.b);
}

static int teardown(void **state)
{
    (void)state;
    conn_free_all();
    ws_free();
    store_shutdown();
    session_free_all();
    for (int i = 0; i < t.n; i++) {
        bufferevent_free(t.end[i]);
        free(t.c[i]);
    }
    support_base_free(t.base);
    config_free(&t.s);
    const char *files[] = {"chatd.db", "chatd.db-wal", "chatd.db-shm"};
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", t.dir, files[i]);
        unlink(path);
    }
    rmdir(t.dir);
    return 0;
}

/* ---- helpers ---- */

static void stored(void *arg, int status)
{
    *(int *)arg = status;
}

/* A new session; its token into token (64 bytes), stored before it returns. */
static void create(int64_t user_id, const char *name, char *token)
{
    int status = 1;
    assert_int_equal(session_create(user_id, name, token, stored, &status), 0);
    RUN_UNTIL(t.base, status != 1, 2000);
    assert_int_equal(status, 0);
}

struct found {
    int calls;
    int status;
    struct session *s;
};

static void on_found(struct session *s, int status, void *arg)
{
    struct found *f = arg;
    f->calls++;
    f->status = status;
    f->s = s;
}

/* The session of a token, as a lookup answers it (at once for this store). */
static struct session *lookup(const char *token)
{
    struct found f = {0};
    assert_int_equal(session_lookup(token, on_found, &f), 0);
    assert_int_equal(f.calls, 1);
    assert_int_equal(f.status, 0);
    return f.s;
}

static void key_of(const char *token, char out[SESSION_KEY_LEN + 1])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* A client of s on an open WebSocket, as the app opens one. */
static struct client *client_of(struct session *s)
{
    assert_true(t.n < MAX_CLIENTS);
    struct client *c = calloc(1, sizeof *c);
    assert_non_null(c);
    struct conn *conn = support_conn(t.base, &t.end[t.n]);
    assert_non_null(conn);
    assert_int_equal(ws_attach(conn, c), 0);
    c->id = conn->id;
    c->conn = conn;
    t.c[t.n++] = c;
    session_attach(c, s);
    return c;
}

static int index_of(const struct client *c)
{
    for (int i = 0; i < t.n; i++)
        if (t.c[i] == c)
            return i;
    fail_msg("not a client of the test");
    return -1;
}

/* The close frame c's end got within ms: its code, or -1 for none. */
static int close_code(const struct client *c, int ms)
{
    struct wsc_frame f;
    if (!wsc_wait(t.base, t.end[index_of(c)], &f, ms))
        return -1;
    int code = wsc_close_code(&f);
    if (code == SESSION_CLOSE_ENDED)
        assert_string_equal((char *)f.data + 2, "session ended");
    wsc_frame_free(&f);
    return code;
}

/* Wait for every queued storage job. */
static void drain_store(void)
{
    RUN_UNTIL(t.base, store_in_flight() == 0, 2000);
    assert_int_equal(store_in_flight(), 0);
}

/* Start the sessions again from the store, as at a restart (no client may
 * be attached to a session then). */
static void reload(void)
{
    drain_store();
    session_free_all();
    assert_int_equal(session_init(t.base, &t.s, t.b), 0);
}

struct row {
    char key[SESSION_KEY_LEN + 1];
    int64_t user_id, expires_at;
    const char *username;
    int found;
    int status; /* the job's, 1 until it is done */
};

static int run_insert(chatd_db *db, void *arg)
{
    struct row *r = arg;
    return db_run(db,
                  "INSERT INTO user_session (token_hash, user_id, username, created_at,"
                  " expires_at) VALUES (?, ?, ?, ?, ?)",
                  "sisii", r->key, r->user_id, r->username, clock_wall_s(), r->expires_at);
}

static int run_select(chatd_db *db, void *arg)
{
    struct row *r = arg;
    chatd_stmt *st =
        db_bind(db, "SELECT expires_at FROM user_session WHERE token_hash = ?", "s", r->key);
    if (!st)
        return CHATD_EINTERNAL;
    r->found = 0;
    int rc = db->drv->step(st);
    if (rc == CHATD_ROW) {
        r->found = 1;
        r->expires_at = db->drv->column_int(st, 0);
        rc = CHATD_DONE;
    }
    db->drv->reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

static void row_done(void *arg, int status)
{
    ((struct row *)arg)->status = status;
}

/* Run a job on a row of user_session, and wait for it. */
static void job(int flags, chatd_job_run run, struct row *r)
{
    r->status = 1;
    assert_int_equal(store_submit(t.b, flags, run, row_done, r), 0);
    RUN_UNTIL(t.base, r->status != 1, 2000);
    assert_int_equal(r->status, 0);
}

/* ---- the cases ---- */

static void test_create_and_lookup(void **state)
{
    (void)state;
    char token[64], other[64];
    int status = 1;
    int64_t created = clock_wall_s(); /* the second may turn before the checks below */
    assert_int_equal(session_create(7, "alice", token, stored, &status), 0);
    assert_int_equal(strlen(token), SESSION_TOKEN_LEN);
    assert_int_equal(
        strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        SESSION_TOKEN_LEN);
    /* known at once, stored soon after */
    struct session *s = lookup(token);
    assert_non_null(s);
    RUN_UNTIL(t.base, status != 1, 2000);
    assert_int_equal(status, 0);
    assert_int_equal(session_user_id(s), 7);
    assert_string_equal(session_username(s), "alice");
    assert_false(session_expired(s));
    char key[SESSION_KEY_LEN + 1];
    key_of(token, key);
    assert_string_equal(session_key(s), key); /* kept by its hash */
    assert_ptr_equal(session_find_key(key), s);
    assert_int_equal(session_ttl(), 3600);
    int64_t now = clock_wall_s();
    assert_true(session_live_at(s, created + 3599));
    assert_false(session_live_at(s, now + 3601));
    assert_false(session_live_at(NULL, now));

    status = 1;
    assert_int_equal(session_create(7, "alice", other, stored, &status), 0);
    RUN_UNTIL(t.base, status != 1, 2000);
    assert_string_not_equal(token, other);
    assert_ptr_not_equal(lookup(other), s);
    assert_int_equal(session_count(), 2);

    struct row r = {0};
    memcpy(r.key, key, sizeof r.key);
    job(CHATD_JOB_READ, run_select, &r);
    assert_true(r.found); /* the store holds the hash */
}

static void test_unknown_and_malformed_tokens(void **state)
{
    (void)state;
    char token[64];
    int status = 1;
    assert_int_equal(session_create(7, "alice", token, stored, &status), 0);
    RUN_UNTIL(t.base, status != 1, 2000);
    char wrong[64];
    memcpy(wrong, token, sizeof wrong);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    assert_null(lookup(wrong));
    char long_one[80];
    snprintf(long_one, sizeof long_one, "%sA", token);
    char bad_char[64];
    memcpy(bad_char, token, sizeof bad_char);
    bad_char[5] = '+';
    const char *bad[] = {
        NULL,     "",
        "short",  long_one,
        bad_char, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* well formed, unknown */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(lookup(bad[i]));
    char key[SESSION_KEY_LEN + 1];
    key_of(token, key);
    key[0] = key[0] == '0' ? '1' : '0';
    assert_null(session_find_key(key));
    assert_non_null(lookup(token));
}

static void test_end_closes_clients(void **state)
{
    (void)state;
    char token[64], other[64];
    create(7, "alice", token);
    create(7, "alice", other);
    struct session *s = lookup(token), *s2 = lookup(other);
    struct client *a = client_of(s), *b = client_of(s), *c = client_of(s2);
    assert_ptr_equal(a->session, s);
    assert_int_equal(a->user_id, 7);

    session_end(s);
    assert_null(a->session);
    assert_null(b->session);
    assert_false(ws_is_open(a->conn));
    assert_int_equal(close_code(a, 1000), SESSION_CLOSE_ENDED);
    assert_int_equal(close_code(b, 1000), SESSION_CLOSE_ENDED);
    assert_null(lookup(token)); /* at once */
    assert_true(ws_is_open(c->conn));
    assert_ptr_equal(c->session, s2);
    assert_int_equal(close_code(c, 50), -1);
    assert_ptr_equal(lookup(other), s2);
    assert_int_equal(session_count(), 1);
    RUN_UNTIL(t.base, t.closed == 2, 1000);
    assert_int_equal(t.closed, 2);

    /* and the store forgot it */
    drain_store();
    struct row r = {0};
    key_of(token, r.key);
    job(CHATD_JOB_READ, run_select, &r);
    assert_false(r.found);
}

static void test_end_user(void **state)
{
    (void)state;
    char t1[64], t2[64], t3[64];
    create(7, "alice", t1);
    create(7, "alice", t2);
    create(8, "bob", t3);
    struct client *a = client_of(lookup(t1)), *b = client_of(lookup(t2));
    struct client *c = client_of(lookup(t3));
    session_end_user(7);
    assert_int_equal(close_code(a, 1000), SESSION_CLOSE_ENDED);
    assert_int_equal(close_code(b, 1000), SESSION_CLOSE_ENDED);
    assert_null(lookup(t1));
    assert_null(lookup(t2));
    assert_non_null(lookup(t3));
    assert_true(ws_is_open(c->conn));
    assert_int_equal(close_code(c, 50), -1);
    assert_int_equal(session_count(), 1);
    session_end_user(9); /* none: nothing */
    assert_int_equal(session_count(), 1);

    session_detach(c); /* sessions are freed below: nothing may point at them */
    reload();          /* the store ended them too */
    assert_int_equal(session_count(), 1);
    assert_null(lookup(t1));
    assert_non_null(lookup(t3));
}

/* KEEP_ALIVE's touch moves the expiry a whole TTL ahead, and writes it when
 * it moved a tenth of the TTL. */
static void test_touch(void **state)
{
    (void)state;
    const char *token = "touchtouchtouchtouchtouchtouchtouchtouchtou";
    int64_t now = clock_wall_s();
    struct row r = {.user_id = 5, .username = "carol", .expires_at = now + 5};
    key_of(token, r.key);
    job(CHATD_JOB_WRITE, run_insert, &r);
    reload();
    struct session *s = lookup(token);
    assert_non_null(s);
    assert_int_equal(session_user_id(s), 5);
    assert_true(session_live_at(s, now + 4));
    assert_false(session_live_at(s, now + 5));

    session_touch(s);
    now = clock_wall_s();
    assert_true(session_live_at(s, now + 3599));
    assert_false(session_live_at(s, now + 3600));
    assert_int_equal(store_in_flight(), 1); /* the new expiry is written */
    drain_store();
    job(CHATD_JOB_READ, run_select, &r);
    assert_true(r.found);
    assert_true(r.expires_at >= now + 3600 - 1 && r.expires_at <= now + 3600);
    session_touch(s); /* moved by less than a tenth: memory only */
    assert_int_equal(store_in_flight(), 0);
}

/* A session with a WebSocket ends by its TTL within about a second or two,
 * and its client is closed as at a logout. */
static void test_ttl_sweep(void **state)
{
    (void)state;
    t.s.session_ttl = 1;
    char token[64], idle[64];
    create(7, "alice", token);
    create(8, "bob", idle); /* no WebSocket: not swept, but a lookup ends it */
    struct client *c = client_of(lookup(token));
    int64_t start = clock_now_ms();
    assert_int_equal(close_code(c, 3000), SESSION_CLOSE_ENDED);
    int64_t took = clock_now_ms() - start;
    assert_true(took <= 2500);
    assert_null(c->session);
    assert_int_equal(session_count(), 1);
    assert_null(lookup(token));
    assert_null(lookup(idle));
    assert_int_equal(session_count(), 0);
}

/* Sessions are loaded back from the store, except those ended or expired. */
static void test_loaded_back(void **state)
{
    (void)state;
    char ta[64], tb[64], tc[64];
    create(7, "alice", ta);
    create(8, "bob", tb);
    create(9, "dave", tc);
    session_end(lookup(tc));
    struct row old = {.user_id = 10, .username = "old", .expires_at = clock_wall_s() - 1};
    key_of("oldoldoldoldoldoldoldoldoldoldoldoldoldoldo", old.key);
    job(CHATD_JOB_WRITE, run_insert, &old);

    reload();
    assert_int_equal(session_count(), 2);
    struct session *a = lookup(ta), *b = lookup(tb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(session_user_id(a), 7);
    assert_string_equal(session_username(a), "alice");
    assert_int_equal(session_user_id(b), 8);
    assert_string_equal(session_username(b), "bob");
    assert_true(session_live_at(a, clock_wall_s() + 3500));
    assert_null(lookup(tc));
    assert_null(lookup("oldoldoldoldoldoldoldoldoldoldoldoldoldoldo"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_create_and_lookup),
        T(test_unknown_and_malformed_tokens),
        T(test_end_closes_clients),
        T(test_end_user),
        T(test_touch),
        T(test_ttl_sweep),
        T(test_loaded_back),
    };
    log_open(NULL, CHATD_LOG_WARN); /* not every migration applied */
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    metrics_free(); /* once: the counters' cells are cached for the process's life */
    return failed;
}
