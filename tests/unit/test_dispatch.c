/*
 * Unit tests for core/app/dispatch.c: a client with a session (SQLite store
 * in a temporary folder) on a real WebSocket over a bufferevent pair; its
 * messages are handed to dispatch_text directly, and what is sent back is
 * read as frames at the test's end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <event2/bufferevent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "conn.h"
#include "dispatch.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "store.h"
#include "support.h"
#include "ws.h"

enum { H_ECHO, H_DECLINE1, H_DECLINE2, H_HOLD, H_FAIL, H_SILENT, H_ANSWER_DECLINE, N_H };

static struct {
    struct event_base *base;
    struct settings s;
    struct store_backend *b;
    char dir[64];
    struct session *session;
    struct client *c;
    struct bufferevent *end;
    int closed;
    /* what the handlers saw */
    int calls[N_H];
    char order[64]; /* which handlers ran, in order */
    chatd_req *held;
    int64_t seen_user;
    uint64_t seen_conn;
    char seen_name[32], seen_type[32];
} t;

/* Owners of the handlers, for dispatch_remove_owner. */
static int owner_a, owner_b;

static void on_text(void *user, const char *data, size_t len)
{
    dispatch_text(user, data, len);
}

static void on_closed(void *user)
{
    session_detach(user);
    t.closed++;
}

static void stored(void *arg, int status)
{
    *(int *)arg = status;
}

static void on_found(struct session *s, int status, void *arg)
{
    (void)status;
    *(struct session **)arg = s;
}

/* A new session of user 7 "alice", stored. */
static struct session *new_session(void)
{
    char token[64];
    int status = 1;
    struct session *s = NULL;
    if (session_create(7, "alice", token, stored, &status) < 0)
        return NULL;
    RUN_UNTIL(t.base, status != 1, 2000);
    session_lookup(token, on_found, &s);
    return status == 0 ? s : NULL;
}

/* A client of the session on an open WebSocket, as the app opens one. */
static int open_client(void)
{
    if (!(t.session = new_session()) || !(t.c = calloc(1, sizeof *t.c)) ||
        !(t.c->username = strdup("alice")))
        return -1;
    struct conn *conn = support_conn(t.base, &t.end);
    if (!conn || ws_attach(conn, t.c) < 0)
        return -1;
    t.c->id = conn->id;
    t.c->conn = conn;
    session_attach(t.c, t.session);
    return 0;
}

static void note(int h)
{
    static const char *const names[N_H] = {"echo", "d1", "d2", "hold", "fail", "silent", "ad"};
    t.calls[h]++;
    size_t n = strlen(t.order);
    snprintf(t.order + n, sizeof t.order - n, "%s%s", n ? "," : "", names[h]);
}

static int h_echo(chatd_req *req, const json_t *msg, void *state)
{
    note(H_ECHO);
    assert_ptr_equal(state, &t);
    t.seen_user = dispatch_req_user_id(req);
    t.seen_conn = dispatch_req_conn_id(req);
    snprintf(t.seen_name, sizeof t.seen_name, "%s", dispatch_req_username(req));
    snprintf(t.seen_type, sizeof t.seen_type, "%s", dispatch_req_type(req));
    json_t *body = json_object_get(msg, "body");
    dispatch_reply(req, "ECHOED", body ? json_pack("{s:O}", "body", body) : NULL);
    return CHATD_OK;
}

static int h_decline1(chatd_req *req, const json_t *msg, void *state)
{
    (void)req, (void)msg, (void)state;
    note(H_DECLINE1);
    return CHATD_DECLINED;
}

static int h_decline2(chatd_req *req, const json_t *msg, void *state)
{
    (void)req, (void)msg, (void)state;
    note(H_DECLINE2);
    return CHATD_DECLINED;
}

static int h_hold(chatd_req *req, const json_t *msg, void *state)
{
    (void)msg, (void)state;
    note(H_HOLD);
    t.held = req;
    return CHATD_PENDING;
}

static int h_fail(chatd_req *req, const json_t *msg, void *state)
{
    (void)req, (void)msg, (void)state;
    note(H_FAIL);
    return CHATD_EINTERNAL;
}

static int h_silent(chatd_req *req, const json_t *msg, void *state)
{
    (void)req, (void)msg, (void)state;
    note(H_SILENT);
    return CHATD_OK;
}

/* Answers, then declines all the same. */
static int h_answer_decline(chatd_req *req, const json_t *msg, void *state)
{
    (void)msg, (void)state;
    note(H_ANSWER_DECLINE);
    dispatch_reply(req, "ANSWERED", NULL);
    return CHATD_DECLINED;
}

static void register_handlers(void)
{
    assert_int_equal(dispatch_register(&owner_a, "ECHO", h_echo, &t), 0);
    assert_int_equal(dispatch_register(&owner_a, "X", h_decline1, NULL), 0);
    assert_int_equal(dispatch_register(&owner_b, "X", h_decline2, NULL), 0);
    assert_int_equal(dispatch_register(&owner_b, "X", h_echo, &t), 0);
    assert_int_equal(dispatch_register(&owner_a, "ALL_DECLINE", h_decline1, NULL), 0);
    assert_int_equal(dispatch_register(&owner_a, "ALL_DECLINE", h_decline2, NULL), 0);
    assert_int_equal(dispatch_register(&owner_a, "SLOW", h_hold, NULL), 0);
    assert_int_equal(dispatch_register(&owner_a, "BOOM", h_fail, NULL), 0);
    assert_int_equal(dispatch_register(&owner_a, "SEND", h_echo, &t), 0);
    assert_int_equal(dispatch_register(&owner_a, "QUIET", h_silent, NULL), 0);
    assert_int_equal(dispatch_register(&owner_a, "AD", h_answer_decline, NULL), 0);
    assert_int_equal(dispatch_register(&owner_a, "AD", h_echo, &t), 0);
}

static int start(const struct dispatch_limits *dl)
{
    memset(&t, 0, sizeof t);
    snprintf(t.dir, sizeof t.dir, "/tmp/chatd-dispatch-XXXXXX");
    if (!mkdtemp(t.dir))
        return -1;
    char data_dir[96], err[256];
    snprintf(data_dir, sizeof data_dir, "server.data_dir=%s", t.dir);
    const char *const ov[] = {data_dir};
    if (config_load(NULL, ov, 1, &t.s, err, sizeof err) < 0)
        return -1;
    t.s.storage_readers = 1;
    t.s.storage_cpu_workers = 1;
    const struct conn_limits cl = {.max_connections = 100, .max_per_addr = 100, .sweep_ms = 1000};
    const struct ws_limits wl = {.max_message = 4096,
                                 .max_outbuf = 1 << 20,
                                 .ping_interval_ms = 30000,
                                 .idle_timeout_ms = 75000};
    const struct ws_events ev = {.text = on_text, .closed = on_closed};
    if (!(t.base = support_base()) || conn_init(t.base, &cl) < 0 || ws_init(t.base, &wl, &ev) < 0 ||
        store_init(t.base, &t.s, CHATD_SOURCE_SQL_DIR) < 0 || dispatch_init(dl) < 0)
        return -1;
    if (!(t.b = store_backend_open("sqlite", err, sizeof err)) ||
        session_init(t.base, &t.s, t.b) < 0)
        return -1;
    register_handlers();
    return open_client();
}

static int setup(void **state)
{
    (void)state;
    const struct dispatch_limits dl = {.rate = 1000, .burst = 1000};
    return start(&dl);
}

/* One message a second, two at once. */
static int setup_slow_rate(void **state)
{
    (void)state;
    const struct dispatch_limits dl = {.rate = 1, .burst = 2};
    return start(&dl);
}

static int teardown(void **state)
{
    (void)state;
    conn_free_all();
    ws_free();
    store_shutdown();
    session_free_all();
    dispatch_free();
    bufferevent_free(t.end);
    if (t.c)
        free(t.c->username);
    free(t.c);
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

/* ---- what comes back ---- */

static void send_msg(const char *text)
{
    dispatch_text(t.c, text, strlen(text));
}

/* The next message at the test's end, decoded (json_decref it). */
static json_t *next_msg(void)
{
    struct wsc_frame f;
    if (!wsc_wait(t.base, t.end, &f, 1000))
        fail_msg("nothing came");
    assert_int_equal(f.opcode, WSC_TEXT);
    json_error_t e;
    json_t *m = json_loadb((const char *)f.data, f.len, 0, &e);
    if (!m)
        fail_msg("not JSON: %s", (char *)f.data);
    wsc_frame_free(&f);
    return m;
}

static void nothing_comes(void)
{
    support_run_for(t.base, 30);
    assert_int_equal(support_pending(t.end), 0);
}

static const char *str(const json_t *m, const char *key)
{
    return json_string_value(json_object_get(m, key));
}

/* The next message is an ERROR with code, and messageType and requestId as
 * given (NULL: absent); its message, borrowed from a static copy. */
static const char *expect_error(const char *code, const char *type, const char *rid)
{
    static char message[256];
    json_t *m = next_msg();
    assert_string_equal(str(m, "type"), "ERROR");
    assert_string_equal(str(m, "code"), code);
    if (type)
        assert_string_equal(str(m, "messageType"), type);
    else
        assert_null(json_object_get(m, "messageType"));
    if (rid)
        assert_string_equal(str(m, "requestId"), rid);
    else
        assert_null(json_object_get(m, "requestId"));
    assert_non_null(str(m, "message"));
    snprintf(message, sizeof message, "%s", str(m, "message"));
    json_decref(m);
    return message;
}

/* ---- the cases ---- */

static void test_reply_carries_request_id(void **state)
{
    (void)state;
    send_msg("{\"type\":\"ECHO\",\"requestId\":\"r-1\",\"body\":{\"x\":1}}");
    json_t *m = next_msg();
    assert_string_equal(str(m, "type"), "ECHOED");
    assert_string_equal(str(m, "requestId"), "r-1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "body"), "x")), 1);
    assert_int_equal(json_object_size(m), 3);
    json_decref(m);
    /* what the handler was given */
    assert_int_equal(t.seen_user, 7);
    assert_string_equal(t.seen_name, "alice");
    assert_int_equal(t.seen_conn, t.c->id);
    assert_string_equal(t.seen_type, "ECHO");

    send_msg("{\"type\":\"ECHO\"}"); /* no requestId: none in the answer */
    m = next_msg();
    assert_string_equal(str(m, "type"), "ECHOED");
    assert_null(json_object_get(m, "requestId"));
    json_decref(m);
    assert_int_equal(t.calls[H_ECHO], 2);
    nothing_comes();
}

static void test_declined_passes_on(void **state)
{
    (void)state;
    send_msg("{\"type\":\"X\",\"requestId\":\"r-2\"}");
    json_t *m = next_msg();
    assert_string_equal(str(m, "type"), "ECHOED");
    assert_string_equal(str(m, "requestId"), "r-2");
    json_decref(m);
    assert_string_equal(t.order, "d1,d2,echo");

    /* every handler declines: an unknown type */
    t.order[0] = '\0';
    send_msg("{\"type\":\"ALL_DECLINE\",\"requestId\":\"r-3\"}");
    assert_string_equal(expect_error("BAD_REQUEST", "ALL_DECLINE", "r-3"), "unknown message type");
    assert_string_equal(t.order, "d1,d2");
    send_msg("{\"type\":\"NOBODY\",\"requestId\":\"r-4\"}");
    assert_string_equal(expect_error("BAD_REQUEST", "NOBODY", "r-4"), "unknown message type");

    /* the handlers of an owner removed, the others stay */
    dispatch_remove_owner(&owner_b);
    t.order[0] = '\0';
    send_msg("{\"type\":\"X\",\"requestId\":\"r-5\"}");
    expect_error("BAD_REQUEST", "X", "r-5");
    assert_string_equal(t.order, "d1");

    /* one that answered is not passed on, whatever it returns */
    t.order[0] = '\0';
    send_msg("{\"type\":\"AD\",\"requestId\":\"r-6\"}");
    m = next_msg();
    assert_string_equal(str(m, "type"), "ANSWERED");
    assert_string_equal(str(m, "requestId"), "r-6");
    json_decref(m);
    assert_string_equal(t.order, "ad");
    nothing_comes();
}

static void test_register_refused(void **state)
{
    (void)state;
    assert_int_equal(dispatch_register(NULL, NULL, h_echo, NULL), CHATD_EINVAL);
    assert_int_equal(dispatch_register(NULL, "", h_echo, NULL), CHATD_EINVAL);
    assert_int_equal(dispatch_register(NULL, "T", NULL, NULL), CHATD_EINVAL);
}

/* A handler that keeps the request answers it later, once. */
static void test_pending_answered_later(void **state)
{
    (void)state;
    send_msg("{\"type\":\"SLOW\",\"requestId\":\"r-7\"}");
    assert_non_null(t.held);
    nothing_comes();
    assert_int_equal(dispatch_reply(t.held, "DONE", json_pack("{s:b}", "ok", 1)), 0);
    json_t *m = next_msg();
    assert_string_equal(str(m, "type"), "DONE");
    assert_true(json_is_true(json_object_get(m, "ok")));
    assert_string_equal(str(m, "requestId"), "r-7");
    json_decref(m);

    t.held = NULL;
    send_msg("{\"type\":\"SLOW\",\"requestId\":\"r-8\"}");
    dispatch_error(t.held, CHATD_ERR_CONFLICT, "taken");
    assert_string_equal(expect_error("CONFLICT", "SLOW", "r-8"), "taken");

    t.held = NULL;
    send_msg("{\"type\":\"SLOW\",\"requestId\":\"r-9\"}");
    dispatch_req_done(t.held); /* complete without a word */
    nothing_comes();
    assert_int_equal(t.calls[H_HOLD], 3);
}

/* A late answer for a client that has gone goes nowhere. */
static void test_pending_client_gone(void **state)
{
    (void)state;
    send_msg("{\"type\":\"SLOW\",\"requestId\":\"r-10\"}");
    assert_non_null(t.held);
    uint64_t id = t.c->id;
    ws_close(t.c->conn, 1000, "bye");
    RUN_UNTIL(t.base, t.closed == 1, 1000);
    assert_null(client_find(id));
    assert_int_equal(dispatch_reply(t.held, "DONE", json_object()), CHATD_ENOTFOUND);
}

static void test_handler_failure_is_internal(void **state)
{
    (void)state;
    send_msg("{\"type\":\"BOOM\",\"requestId\":\"r-11\"}");
    const char *msg = expect_error("INTERNAL", "BOOM", "r-11");
    /* a reference to the log, not the cause */
    const char *prefix = "internal error (ref ";
    assert_memory_equal(msg, prefix, strlen(prefix));
    const char *ref = msg + strlen(prefix);
    for (int i = 0; i < 8; i++)
        assert_true(isxdigit((unsigned char)ref[i]));
    assert_string_equal(ref + 8, ")");
    nothing_comes();
}

/* A text that jansson refused is answered with the type and requestId that
 * could be read from it. */
static void test_malformed_json(void **state)
{
    (void)state;
    send_msg("{\"type\":\"SEND\",\"requestId\":\"r-12\",\"content\":");
    const char *msg = expect_error("BAD_REQUEST", "SEND", "r-12");
    assert_memory_equal(msg, "malformed JSON", 14);

    send_msg("{\"type\":\"SEND\",\"requestId\":\"r-13\",\"content\":\"cut \\ud83d\"}");
    msg = expect_error("BAD_REQUEST", "SEND", "r-13");
    assert_memory_equal(msg, "field 'content'", 15);

    send_msg("not json");
    expect_error("BAD_REQUEST", NULL, NULL);
    assert_int_equal(t.calls[H_ECHO], 0);
    nothing_comes();
}

static void test_not_requests(void **state)
{
    (void)state;
    send_msg("[1,2]");
    assert_string_equal(expect_error("BAD_REQUEST", NULL, NULL), "a message must be a JSON object");
    send_msg("{\"requestId\":\"r-14\"}");
    assert_string_equal(expect_error("BAD_REQUEST", NULL, "r-14"), "missing string field 'type'");
    send_msg("{\"type\":\"\",\"requestId\":\"r-15\"}");
    expect_error("BAD_REQUEST", NULL, "r-15");
    send_msg("{\"type\":\"ECHO\",\"requestId\":5}");
    expect_error("BAD_REQUEST", "ECHO", NULL);
    char text[160];
    snprintf(text, sizeof text, "{\"type\":\"ECHO\",\"requestId\":\"%065d\"}", 0);
    send_msg(text); /* 65 bytes: too long */
    expect_error("BAD_REQUEST", "ECHO", NULL);
    send_msg("{\"type\":\"ECHO\",\"type\":\"ECHO\",\"requestId\":\"r-16\"}"); /* a key twice */
    expect_error("BAD_REQUEST", "ECHO", "r-16");
    assert_int_equal(t.calls[H_ECHO], 0);
    /* the core's KEEP_ALIVE needs no answer */
    send_msg("{\"type\":\"KEEP_ALIVE\",\"requestId\":\"k\"}");
    send_msg("{\"type\":\"QUIET\",\"requestId\":\"q\"}");
    assert_int_equal(t.calls[H_SILENT], 1);
    nothing_comes();
}

/* Past the burst, messages are refused until the rate gives them back;
 * malformed ones count too. */
static void test_rate_limited(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        send_msg("{\"type\":\"ECHO\",\"requestId\":\"ok\"}");
        json_t *m = next_msg();
        assert_string_equal(str(m, "type"), "ECHOED");
        json_decref(m);
    }
    send_msg("{\"type\":\"ECHO\",\"requestId\":\"r-17\"}");
    assert_memory_equal(expect_error("RATE_LIMITED", "ECHO", "r-17"), "too many messages", 17);
    send_msg("{\"type\":\"SEND\",\"requestId\":\"r-18\",\"content\":");
    expect_error("RATE_LIMITED", "SEND", "r-18");
    assert_int_equal(t.calls[H_ECHO], 2);
    nothing_comes();
}

/* A client without a live session is closed with 4001, its message unread. */
static void test_session_ended_closes(void **state)
{
    (void)state;
    session_detach(t.c);
    send_msg("{\"type\":\"ECHO\",\"requestId\":\"r-19\"}");
    struct wsc_frame f;
    assert_true(wsc_wait(t.base, t.end, &f, 1000));
    assert_int_equal(wsc_close_code(&f), SESSION_CLOSE_ENDED);
    assert_string_equal((char *)f.data + 2, "session expired");
    wsc_frame_free(&f);
    assert_int_equal(t.calls[H_ECHO], 0);
    assert_false(ws_is_open(t.c->conn));
}

static void test_session_expired_closes(void **state)
{
    (void)state;
    t.s.session_ttl = 1;
    struct session *s = new_session();
    assert_non_null(s);
    session_detach(t.c);
    t.c->session = s; /* held, not attached: the session's own sweep does not see it */
    RUN_UNTIL(t.base, session_expired(s), 2500);
    assert_true(session_expired(s));
    send_msg("{\"type\":\"ECHO\",\"requestId\":\"r-20\"}");
    struct wsc_frame f;
    assert_true(wsc_wait(t.base, t.end, &f, 1000));
    assert_int_equal(wsc_close_code(&f), SESSION_CLOSE_ENDED);
    wsc_frame_free(&f);
    assert_int_equal(t.calls[H_ECHO], 0);
    t.c->session = NULL;
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_reply_carries_request_id),
        T(test_declined_passes_on),
        T(test_register_refused),
        T(test_pending_answered_later),
        T(test_pending_client_gone),
        T(test_handler_failure_is_internal),
        T(test_malformed_json),
        T(test_not_requests),
        cmocka_unit_test_setup_teardown(test_rate_limited, setup_slow_rate, teardown),
        T(test_session_ended_closes),
        T(test_session_expired_closes),
    };
    log_open(NULL, CHATD_LOG_WARN); /* not every migration applied */
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    metrics_free(); /* once: the counters' cells are cached for the process's life */
    return failed;
}
