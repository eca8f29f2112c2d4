/*
 * Unit tests for core/session/presence.c: the clients of each user and of
 * each entered channel, what the observer is told, and the counts that see
 * only open WebSockets (real ones, over bufferevent pairs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "conn.h"
#include "metrics.h"
#include "presence.h"
#include "support.h"
#include "ws.h"

#define MAX_CLIENTS 8

static struct {
    struct event_base *base;
    struct client *c[MAX_CLIENTS];
    struct bufferevent *end[MAX_CLIENTS];
    int n;
    int closed; /* closes told */
    char log[1024];
} t;

static void note(const char *fmt, ...)
{
    size_t n = strlen(t.log);
    if (n)
        t.log[n++] = ',';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t.log + n, sizeof t.log - n, fmt, ap);
    va_end(ap);
}

static void user_interest(int64_t user_id, int on)
{
    note("user %lld %s", (long long)user_id, on ? "on" : "off");
}

static void channel_interest(int64_t channel_id, int on)
{
    note("channel %lld %s", (long long)channel_id, on ? "on" : "off");
}

static void entered(int64_t channel_id, int64_t user_id, int on)
{
    note("entered %lld %lld %s", (long long)channel_id, (long long)user_id, on ? "on" : "off");
}

/* The observer's calls since the last look, which empties the log. */
#define assert_told(want)                                                                          \
    do {                                                                                           \
        assert_string_equal(t.log, (want));                                                        \
        t.log[0] = '\0';                                                                           \
    } while (0)

static void on_text(void *user, const char *data, size_t len)
{
    (void)user, (void)data, (void)len;
}

/* As the app does: a client's close, told a turn later, takes it out. */
static void on_closed(void *user)
{
    presence_remove(user);
    t.closed++;
}

static int setup(void **state)
{
    (void)state;
    const struct conn_limits cl = {.max_connections = 100, .max_per_addr = 100, .sweep_ms = 1000};
    const struct ws_limits wl = {.max_message = 4096,
                                 .max_outbuf = 1 << 20,
                                 .ping_interval_ms = 30000,
                                 .idle_timeout_ms = 75000};
    const struct ws_events ev = {.text = on_text, .closed = on_closed};
    const struct presence_observer ob = {
        .user_interest = user_interest, .channel_interest = channel_interest, .entered = entered};
    memset(&t, 0, sizeof t);
    if (!(t.base = support_base()) || conn_init(t.base, &cl) < 0 || ws_init(t.base, &wl, &ev) < 0)
        return -1;
    return presence_init(&ob);
}

static int teardown(void **state)
{
    (void)state;
    conn_free_all();
    ws_free();
    presence_free();
    for (int i = 0; i < t.n; i++) {
        bufferevent_free(t.end[i]);
        free(t.c[i]);
    }
    support_base_free(t.base);
    return 0;
}

/* A client of user_id on an open WebSocket, indexed. */
static struct client *client(int64_t user_id)
{
    assert_true(t.n < MAX_CLIENTS);
    struct client *c = calloc(1, sizeof *c);
    assert_non_null(c);
    struct conn *conn = support_conn(t.base, &t.end[t.n]);
    assert_non_null(conn);
    assert_int_equal(ws_attach(conn, c), 0);
    c->id = conn->id;
    c->conn = conn;
    c->user_id = user_id;
    t.c[t.n++] = c;
    assert_int_equal(presence_add(c), 0);
    return c;
}

/* Whether c is on the list that starts at first (by the user or channel links). */
static int listed(struct client *first, struct client *c, int by_user)
{
    for (struct client *x = first; x; x = by_user ? x->u_next : x->c_next)
        if (x == c)
            return 1;
    return 0;
}

static int list_len(struct client *first, int by_user)
{
    int n = 0;
    for (struct client *x = first; x; x = by_user ? x->u_next : x->c_next)
        n++;
    return n;
}

static void test_by_user(void **state)
{
    (void)state;
    struct client *a = client(1), *b = client(1), *c = client(2);
    assert_told("user 1 on,user 2 on"); /* the first of each user only */
    assert_int_equal(presence_count(), 3);
    assert_int_equal(list_len(presence_user_clients(1), 1), 2);
    assert_true(listed(presence_user_clients(1), a, 1));
    assert_true(listed(presence_user_clients(1), b, 1));
    assert_ptr_equal(presence_user_clients(2), c);
    assert_null(presence_user_clients(3));
    assert_true(a->indexed);

    presence_remove(a);
    assert_told("");
    assert_false(a->indexed);
    assert_ptr_equal(presence_user_clients(1), b);
    assert_null(b->u_next);
    assert_int_equal(presence_count(), 2);
    presence_remove(b);
    assert_told("user 1 off");
    assert_null(presence_user_clients(1));
    presence_remove(b); /* once is enough */
    assert_told("");
    assert_int_equal(presence_count(), 1);
    /* back again: the first again */
    assert_int_equal(presence_add(a), 0);
    assert_told("user 1 on");
    assert_int_equal(presence_count(), 2);
}

static void test_enter_leave_replace(void **state)
{
    (void)state;
    struct client *a = client(1), *b = client(1), *c = client(2);
    t.log[0] = '\0';
    assert_int_equal(presence_enter(a, 10), 0);
    assert_told("channel 10 on,entered 10 1 on");
    assert_int_equal(a->channel_id, 10);
    assert_int_equal(presence_enter(b, 10), 0); /* the user is in already */
    assert_told("");
    assert_int_equal(presence_enter(c, 10), 0);
    assert_told("entered 10 2 on");
    assert_int_equal(presence_enter(a, 10), 0); /* where it is already: nothing */
    assert_told("");
    assert_int_equal(list_len(presence_channel_clients(10), 0), 3);
    for (int i = 0; i < 3; i++)
        assert_true(listed(presence_channel_clients(10), t.c[i], 0));

    /* one active channel per WebSocket: entering another leaves the first */
    assert_int_equal(presence_enter(a, 20), 0);
    assert_told("channel 20 on,entered 20 1 on"); /* user 1 stays in 10 with b */
    assert_false(listed(presence_channel_clients(10), a, 0));
    assert_ptr_equal(presence_channel_clients(20), a);
    assert_int_equal(presence_enter(b, 20), 0);
    assert_told("entered 10 1 off");
    assert_ptr_equal(presence_channel_clients(10), c);
    assert_int_equal(presence_enter(c, 0), 0);
    assert_told("channel 10 off,entered 10 2 off");
    assert_null(presence_channel_clients(10));
    assert_int_equal(c->channel_id, 0);
    assert_int_equal(presence_enter(c, 0), 0); /* in none: nothing */
    assert_told("");
    assert_int_equal(presence_enter(a, 0), 0);
    assert_told("");
    assert_int_equal(presence_enter(b, 0), 0);
    assert_told("channel 20 off,entered 20 1 off");
    assert_int_equal(presence_count(), 3); /* leaving channels is not leaving */
}

static void test_user_leave_channel(void **state)
{
    (void)state;
    struct client *a = client(1), *b = client(1), *c = client(2), *d = client(1);
    presence_enter(a, 10);
    presence_enter(b, 10);
    presence_enter(c, 10);
    presence_enter(d, 11);
    t.log[0] = '\0';
    presence_user_leave_channel(1, 10);
    assert_told("entered 10 1 off"); /* once, for the user */
    assert_int_equal(a->channel_id, 0);
    assert_int_equal(b->channel_id, 0);
    assert_int_equal(c->channel_id, 10);
    assert_int_equal(d->channel_id, 11);
    assert_ptr_equal(presence_channel_clients(10), c);
    assert_false(presence_user_in_channel(1, 10));
    assert_true(presence_user_in_channel(1, 11));
    assert_true(presence_user_in_channel(2, 10));
    presence_user_leave_channel(1, 10); /* in it no more: nothing */
    presence_user_leave_channel(3, 10); /* no such user here */
    assert_told("");
    presence_user_leave_channel(1, 11);
    assert_told("channel 11 off,entered 11 1 off");
}

struct seen {
    int n;
    int64_t pairs[MAX_CLIENTS][2];
};

static void collect(int64_t channel_id, int64_t user_id, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < MAX_CLIENTS);
    s->pairs[s->n][0] = channel_id;
    s->pairs[s->n][1] = user_id;
    s->n++;
}

/* How many times (channel, user) came. */
static int times(const struct seen *s, int64_t channel_id, int64_t user_id)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += s->pairs[i][0] == channel_id && s->pairs[i][1] == user_id;
    return n;
}

static void test_each_entered(void **state)
{
    (void)state;
    struct seen s = {0};
    presence_each_entered(collect, &s);
    assert_int_equal(s.n, 0);
    struct client *a = client(1), *b = client(1), *c = client(2);
    client(3); /* in no channel */
    presence_enter(a, 10);
    presence_enter(b, 10);
    presence_enter(c, 11);
    presence_each_entered(collect, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(times(&s, 10, 1), 2); /* once per client */
    assert_int_equal(times(&s, 11, 2), 1);
    assert_int_equal(presence_count(), 4);
}

/* Removing a client takes it out of its channel first. */
static void test_remove_entered(void **state)
{
    (void)state;
    struct client *a = client(1);
    presence_enter(a, 10);
    t.log[0] = '\0';
    presence_remove(a);
    assert_told("channel 10 off,entered 10 1 off,user 1 off");
    assert_int_equal(a->channel_id, 0);
    assert_null(presence_channel_clients(10));
    assert_null(presence_user_clients(1));
    assert_int_equal(presence_count(), 0);
}

/* Online and in-channel count open WebSockets only: a closing one stops
 * counting at its close, though it stays indexed until the close is told. */
static void test_open_sockets_only(void **state)
{
    (void)state;
    struct client *a = client(1), *b = client(1), *c = client(2);
    presence_enter(a, 10);
    presence_enter(b, 10);
    t.log[0] = '\0';
    assert_true(presence_user_online(1));
    assert_true(presence_user_in_channel(1, 10));
    assert_false(presence_user_in_channel(1, 11));
    assert_false(presence_user_in_channel(2, 10));
    assert_true(presence_user_online(2));
    assert_false(presence_user_online(3));

    ws_close(a->conn, 1000, "bye");
    assert_true(presence_user_online(1)); /* b is open */
    assert_true(presence_user_in_channel(1, 10));
    ws_close(b->conn, 1000, "bye");
    assert_false(presence_user_online(1));
    assert_false(presence_user_in_channel(1, 10));
    assert_true(presence_user_online(2));
    assert_int_equal(t.closed, 0); /* told on the next turn */
    assert_int_equal(presence_count(), 3);
    assert_int_equal(list_len(presence_channel_clients(10), 0), 2);
    assert_told("");

    support_turn(t.base);
    assert_int_equal(t.closed, 2);
    assert_int_equal(presence_count(), 1);
    assert_ptr_equal(presence_user_clients(2), c);
    /* the observer hears "off" once, when the user's last client there
     * goes, closing or not: one "off" for each "on" */
    assert_told("channel 10 off,entered 10 1 off,user 1 off");

    /* a closing client entering a channel counts as gone there too */
    struct client *d = client(3);
    ws_close(d->conn, 1000, "bye");
    t.log[0] = '\0';
    presence_enter(d, 12);
    assert_false(presence_user_in_channel(3, 12));
    assert_false(presence_user_online(3));
    /* and one open beside it is no second "on" */
    struct client *e = client(3);
    t.log[0] = '\0';
    presence_enter(e, 12);
    assert_true(presence_user_in_channel(3, 12));
    assert_told("");
    support_turn(t.base);
    assert_int_equal(t.closed, 3);
    assert_told(""); /* e is still there */
    presence_enter(e, 0);
    assert_told("channel 12 off,entered 12 3 off");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_by_user),      T(test_enter_leave_replace), T(test_user_leave_channel),
        T(test_each_entered), T(test_remove_entered),      T(test_open_sockets_only),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    metrics_free(); /* once: the counters' cells are cached for the process's life */
    return failed;
}
