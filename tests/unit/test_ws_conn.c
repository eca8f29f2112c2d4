/*
 * Unit tests for core/ws/ws.c on connections: the test holds the client's
 * end of a bufferevent pair, writes masked frames (RFC 6455, section 5) and
 * reads the server's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "metrics.h"
#include "support.h"
#include "ws.h"

#define N_PEERS 3

/* One WebSocket: the server's connection and the test's end. */
struct peer {
    struct conn *conn;
    uint64_t id;
    struct bufferevent *end;
    int texts;  /* messages told */
    char *last; /* the last one, NUL-terminated */
    size_t last_len;
    int closed;       /* closes told */
    int marked_first; /* the close was told after the marker's event ran */
    int close_inside; /* closes told before a ws_close made in a text event returned */
};

static struct {
    struct event_base *base;
    struct peer p[N_PEERS];
    struct event *marker; /* activated by the text "mark" */
    int marker_ran;
} t;

static void on_marker(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    t.marker_ran = 1;
}

static void on_text(void *user, const char *data, size_t len)
{
    struct peer *p = user;
    p->texts++;
    free(p->last);
    p->last = malloc(len + 1);
    assert_non_null(p->last);
    memcpy(p->last, data, len);
    p->last[len] = '\0';
    p->last_len = len;
    if (len == 4 && memcmp(data, "mark", 4) == 0)
        event_active(t.marker, EV_TIMEOUT, 0);
    if (len == 8 && memcmp(data, "close me", 8) == 0) {
        ws_close(p->conn, 4000, "asked");
        p->close_inside = p->closed;
    }
}

static void on_closed(void *user)
{
    struct peer *p = user;
    p->closed++;
    p->marked_first = t.marker_ran;
}

static const struct ws_events events = {.text = on_text, .closed = on_closed};

static int start(const struct ws_limits *wl)
{
    const struct conn_limits cl = {.max_connections = 100, .max_per_addr = 100, .sweep_ms = 20};
    memset(&t, 0, sizeof t);
    if (!(t.base = support_base()) || conn_init(t.base, &cl) < 0 ||
        ws_init(t.base, wl, &events) < 0 || !(t.marker = event_new(t.base, -1, 0, on_marker, NULL)))
        return -1;
    for (int i = 0; i < N_PEERS; i++) {
        struct peer *p = &t.p[i];
        if (!(p->conn = support_conn(t.base, &p->end)) || ws_attach(p->conn, p) < 0)
            return -1;
        p->id = p->conn->id;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    const struct ws_limits wl = {.max_message = 1024,
                                 .max_outbuf = 4096,
                                 .ping_interval_ms = 30000,
                                 .idle_timeout_ms = 75000};
    return start(&wl);
}

/* Pings after 100 ms of silence, drops after 400. */
static int setup_quick_pings(void **state)
{
    (void)state;
    const struct ws_limits wl = {
        .max_message = 1024, .max_outbuf = 4096, .ping_interval_ms = 100, .idle_timeout_ms = 400};
    return start(&wl);
}

static int teardown(void **state)
{
    (void)state;
    conn_free_all();
    ws_free();
    for (int i = 0; i < N_PEERS; i++) {
        bufferevent_free(t.p[i].end);
        free(t.p[i].last);
    }
    event_free(t.marker);
    support_base_free(t.base);
    return 0;
}

/* The next frame at p's end, within a second. */
static void next_frame(struct peer *p, struct wsc_frame *f)
{
    if (!wsc_wait(t.base, p->end, f, 1000))
        fail_msg("no frame came");
}

/* The next frame is a close with this code. */
static void expect_close(struct peer *p, int code)
{
    struct wsc_frame f;
    next_frame(p, &f);
    assert_int_equal(f.opcode, WSC_CLOSE);
    assert_int_equal(wsc_close_code(&f), code);
    wsc_frame_free(&f);
}

static void test_text_whole(void **state)
{
    (void)state;
    struct peer *p = &t.p[0];
    wsc_send_text(p->end, "{\"type\":\"hello\"}");
    RUN_UNTIL(t.base, p->texts == 1, 1000);
    assert_int_equal(p->texts, 1);
    assert_string_equal(p->last, "{\"type\":\"hello\"}");
    assert_int_equal(p->last_len, 16);
    /* a second message on the same connection, and nothing said to the others */
    wsc_send_text(p->end, "again");
    RUN_UNTIL(t.base, p->texts == 2, 1000);
    assert_string_equal(p->last, "again");
    assert_int_equal(t.p[1].texts, 0);
    assert_true(ws_is_open(p->conn));
    assert_ptr_equal(ws_user(p->conn), p);
    assert_int_equal(support_pending(p->end), 0); /* nothing to answer */
}

/* A message in three fragments, with a ping between them and a character
 * cut in two, written a byte at a time: told once, whole. */
static void test_text_fragmented(void **state)
{
    (void)state;
    struct peer *p = &t.p[0];
    unsigned char buf[512];
    size_t n = 0;
    n += wsc_build(buf + n, 0, WSC_TEXT, "Hel", 3);
    n += wsc_build(buf + n, 0, WSC_CONT, "lo, w\xc3", 6);
    n += wsc_build(buf + n, 1, WSC_PING, "mid", 3);
    n += wsc_build(buf + n, 1, WSC_CONT, "\xb6rld", 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p->texts, 0);
        bufferevent_write(p->end, buf + i, 1);
        support_turn(t.base);
    }
    RUN_UNTIL(t.base, p->texts == 1, 1000);
    assert_int_equal(p->texts, 1);
    assert_string_equal(p->last, "Hello, w\xc3\xb6rld");
    struct wsc_frame f;
    next_frame(p, &f); /* the ping in the middle was answered */
    assert_int_equal(f.opcode, WSC_PONG);
    assert_string_equal((char *)f.data, "mid");
    wsc_frame_free(&f);

    /* a 300-byte message (16-bit length) split inside its header */
    char text[301];
    memset(text, 'x', 300);
    text[300] = '\0';
    n = wsc_build(buf, 1, WSC_TEXT, text, 300);
    bufferevent_write(p->end, buf, 3);
    support_turn(t.base);
    bufferevent_write(p->end, buf + 3, 100);
    support_turn(t.base);
    assert_int_equal(p->texts, 1);
    bufferevent_write(p->end, buf + 103, n - 103);
    RUN_UNTIL(t.base, p->texts == 2, 1000);
    assert_int_equal(p->last_len, 300);
    assert_string_equal(p->last, text);
    assert_true(ws_is_open(p->conn));
}

static void test_ping_answered(void **state)
{
    (void)state;
    struct peer *p = &t.p[1];
    wsc_send(p->end, 1, WSC_PING, "abc", 3);
    struct wsc_frame f;
    next_frame(p, &f);
    assert_int_equal(f.opcode, WSC_PONG);
    assert_true(f.fin);
    assert_false(f.masked); /* server frames are not masked */
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.data, "abc", 3);
    wsc_frame_free(&f);
    assert_int_equal(p->texts, 0);
    assert_true(ws_is_open(p->conn));
}

/* Silence past ping_interval brings the server's ping; a client that
 * answers stays; one silent past idle_timeout is dropped. */
static void test_server_pings(void **state)
{
    (void)state;
    struct peer *p = &t.p[0], *q = &t.p[1];
    support_run_for(t.base, 40);
    assert_int_equal(support_pending(p->end), 0); /* not before the interval */
    struct wsc_frame f;
    next_frame(p, &f);
    assert_int_equal(f.opcode, WSC_PING);
    wsc_frame_free(&f);
    /* p answers every ping; q never does */
    for (int i = 0; i < 4; i++) {
        wsc_send(p->end, 1, WSC_PONG, "", 0);
        support_run_for(t.base, 100);
        while (wsc_recv(p->end, &f)) {
            assert_int_equal(f.opcode, WSC_PING);
            wsc_frame_free(&f);
        }
    }
    assert_true(ws_is_open(p->conn));
    assert_int_equal(p->closed, 0);
    assert_null(conn_find(q->id));
    assert_int_equal(q->closed, 1);
}

static void test_binary_closes_1003(void **state)
{
    (void)state;
    struct peer *p = &t.p[0];
    wsc_send(p->end, 1, WSC_BINARY, "\x01\x02", 2);
    expect_close(p, 1003);
    assert_false(ws_is_open(p->conn));
    assert_int_equal(p->texts, 0);
    RUN_UNTIL(t.base, p->closed == 1, 1000);
    assert_int_equal(p->closed, 1);
}

static void test_invalid_utf8_closes_1007(void **state)
{
    (void)state;
    struct peer *p = &t.p[0];
    wsc_send(p->end, 1, WSC_TEXT, "ok\xed\xa0\x80", 5); /* a surrogate */
    expect_close(p, 1007);
    assert_int_equal(p->texts, 0);
    /* and one cut short at the message's end */
    struct peer *q = &t.p[1];
    wsc_send(q->end, 1, WSC_TEXT, "\xe2\x82", 2);
    expect_close(q, 1007);
    assert_int_equal(q->texts, 0);
}

static void test_too_big_closes_1009(void **state)
{
    (void)state;
    struct peer *p = &t.p[0];
    char big[1025];
    memset(big, 'a', sizeof big);
    wsc_send(p->end, 1, WSC_TEXT, big, sizeof big);
    expect_close(p, 1009);
    assert_int_equal(p->texts, 0);
    /* max_message exactly is fine, also in fragments */
    struct peer *q = &t.p[1];
    wsc_send(q->end, 0, WSC_TEXT, big, 1000);
    wsc_send(q->end, 1, WSC_CONT, big, 24);
    RUN_UNTIL(t.base, q->texts == 1, 1000);
    assert_int_equal(q->last_len, 1024);
    /* but one byte more in fragments is too big */
    wsc_send(q->end, 0, WSC_TEXT, big, 1000);
    wsc_send(q->end, 1, WSC_CONT, big, 25);
    expect_close(q, 1009);
    assert_int_equal(q->texts, 1);
}

static void test_unmasked_frame_closes_1002(void **state)
{
    (void)state;
    struct peer *p = &t.p[0];
    bufferevent_write(p->end, "\x81\x02hi", 4);
    expect_close(p, 1002);
    assert_int_equal(p->texts, 0);
}

/* The client's close is answered and told once, after the callback that
 * read it: an event activated inside that read (by the text "mark", which
 * came in the same bytes) runs first. */
static void test_client_close(void **state)
{
    (void)state;
    struct peer *p = &t.p[0];
    unsigned char buf[64];
    size_t n = wsc_build(buf, 1, WSC_TEXT, "mark", 4);
    n += wsc_build(buf + n, 1, WSC_CLOSE,
                   "\x03\xe8"
                   "bye",
                   5);
    bufferevent_write(p->end, buf, n);
    expect_close(p, 1000);
    RUN_UNTIL(t.base, p->closed == 1, 1000);
    assert_int_equal(p->texts, 1);
    assert_int_equal(p->closed, 1);
    assert_int_equal(p->marked_first, 1);
    support_run_for(t.base, 50);
    assert_int_equal(p->closed, 1);
    assert_null(conn_find(p->id));
    assert_int_equal(conn_count(), N_PEERS - 1);
    assert_int_equal(t.p[1].closed, 0);
}

/* A close made inside the text event is told after it returned. */
static void test_close_from_event(void **state)
{
    (void)state;
    struct peer *p = &t.p[2];
    wsc_send_text(p->end, "close me");
    RUN_UNTIL(t.base, p->texts == 1, 1000);
    assert_int_equal(p->close_inside, 0);
    assert_false(ws_is_open(p->conn));
    assert_null(ws_user(p->conn));
    struct wsc_frame f;
    next_frame(p, &f);
    assert_int_equal(wsc_close_code(&f), 4000);
    assert_int_equal(f.len, 7);
    assert_memory_equal(f.data + 2, "asked", 5);
    wsc_frame_free(&f);
    /* closing again sends nothing more; nothing is delivered now */
    ws_close(p->conn, 1000, "again");
    struct wsmsg *m = wsmsg_new("late", 4);
    assert_int_equal(ws_send(p->conn, m), -1);
    wsmsg_unref(m);
    RUN_UNTIL(t.base, p->closed == 1, 1000);
    assert_int_equal(p->closed, 1);
    /* the peer's close ends it */
    wsc_send_close(p->end, 4000, NULL);
    RUN_UNTIL(t.base, conn_find(p->id) == NULL, 1000);
    assert_null(conn_find(p->id));
    assert_int_equal(support_pending(p->end), 0);
    assert_int_equal(p->closed, 1);
}

/* A close made from outside any event is told on the next turn too. */
static void test_close_told_next_turn(void **state)
{
    (void)state;
    struct peer *p = &t.p[1];
    ws_close(p->conn, 1001, "going");
    assert_false(ws_is_open(p->conn));
    assert_int_equal(p->closed, 0);
    support_turn(t.base);
    assert_int_equal(p->closed, 1);
    expect_close(p, 1001);
}

static void read_text(struct peer *p, const struct wsmsg *m)
{
    struct wsc_frame f;
    next_frame(p, &f);
    assert_int_equal(f.opcode, WSC_TEXT);
    assert_true(f.fin);
    assert_int_equal(f.len, m->len - m->hdr);
    assert_memory_equal(f.data, m->data + m->hdr, f.len);
    wsc_frame_free(&f);
}

/* One frame sent to several: the same bytes for each; a large one is held
 * by reference until every output let it go. */
static void test_shared_send(void **state)
{
    (void)state;
    struct wsmsg *small = wsmsg_new("{\"n\":1}", 7);
    char *text = malloc(3000);
    assert_non_null(text);
    memset(text, 'z', 3000);
    struct wsmsg *big = wsmsg_new(text, 3000);
    free(text);
    for (int i = 0; i < N_PEERS; i++) {
        assert_int_equal(ws_send(t.p[i].conn, small), 0);
        assert_int_equal(ws_send(t.p[i].conn, big), 0);
    }
    assert_int_equal(small->refs, 1); /* copied */
    assert_int_equal(big->refs, 1 + N_PEERS);
    for (int i = 0; i < N_PEERS; i++) {
        read_text(&t.p[i], small);
        read_text(&t.p[i], big);
        assert_int_equal(support_pending(t.p[i].end), 0);
    }
    assert_int_equal(big->refs, 1);
    wsmsg_unref(small);
    wsmsg_unref(big);
}

/* A client that does not read is closed (1008) once its unread output
 * passes max_outbuf; it gets what was queued before, then the close. */
static void test_slow_reader(void **state)
{
    (void)state;
    struct peer *p = &t.p[0], *q = &t.p[1];
    bufferevent_disable(p->end, EV_READ);
    char text[2000];
    memset(text, 's', sizeof text);
    struct wsmsg *m = wsmsg_new(text, sizeof text);
    assert_int_equal(ws_send(p->conn, m), 0);
    assert_int_equal(ws_send(p->conn, m), 0);
    assert_true(ws_is_open(p->conn)); /* 4008 bytes: not over 4096 */
    assert_int_equal(ws_send(p->conn, m), 0);
    assert_false(ws_is_open(p->conn));
    assert_int_equal(ws_send(p->conn, m), -1);
    /* the reader of the same frames is not held up */
    for (int i = 0; i < 4; i++)
        assert_int_equal(ws_send(q->conn, m), 0);
    for (int i = 0; i < 4; i++)
        read_text(q, m);
    assert_true(ws_is_open(q->conn));

    RUN_UNTIL(t.base, p->closed == 1, 1000);
    assert_int_equal(p->closed, 1);
    bufferevent_enable(p->end, EV_READ);
    for (int i = 0; i < 3; i++)
        read_text(p, m);
    expect_close(p, 1008);
    wsmsg_unref(m);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_text_whole),
        T(test_text_fragmented),
        T(test_ping_answered),
        cmocka_unit_test_setup_teardown(test_server_pings, setup_quick_pings, teardown),
        T(test_binary_closes_1003),
        T(test_invalid_utf8_closes_1007),
        T(test_too_big_closes_1009),
        T(test_unmasked_frame_closes_1002),
        T(test_client_close),
        T(test_close_from_event),
        T(test_close_told_next_turn),
        T(test_shared_send),
        T(test_slow_reader),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    metrics_free(); /* once: the counters' cells are cached for the process's life */
    return failed;
}
