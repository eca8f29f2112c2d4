/*
 * Unit tests for core/http/http.c on connections: the test holds the
 * client's end of a bufferevent pair, writes requests and reads the answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "http.h"
#include "metrics.h"
#include "support.h"

#define MAX_REQS 8

static struct {
    struct event_base *base;
    struct bufferevent *end;
    struct chatd_http *reqs[MAX_REQS]; /* the requests told, in order (freed once answered) */
    int methods[MAX_REQS];             /* and what they were */
    int n_headers[MAX_REQS];
    int keep_alive[MAX_REQS];
    int n_reqs;
    int answer_now;        /* on_request answers with the path as body */
    int switch_now;        /* on_request answers 101 */
    struct conn *switched; /* what http_switch_protocols gave back */
    int switched_bare;     /* it had no protocol installed then */
    char raw[256];         /* what the protocol after the switch read */
} t;

static void answer_path(struct chatd_http *req)
{
    http_respond(req, 200, "text/plain", req->path, strlen(req->path), NULL);
}

static void on_request(struct chatd_http *req)
{
    if (t.n_reqs == MAX_REQS)
        fail_msg("too many requests");
    t.methods[t.n_reqs] = req->method;
    t.n_headers[t.n_reqs] = req->n_headers;
    t.keep_alive[t.n_reqs] = req->keep_alive;
    t.reqs[t.n_reqs++] = req;
    if (t.switch_now) {
        t.switched = http_switch_protocols(req, "Upgrade: test\r\nConnection: Upgrade\r\n");
        t.switched_bare = t.switched && !t.switched->ops && !t.switched->proto;
    } else if (t.answer_now) {
        answer_path(req);
    }
}

static int setup(void **state)
{
    (void)state;
    const struct conn_limits cl = {.max_connections = 100, .max_per_addr = 100, .sweep_ms = 50};
    const struct http_limits hl = {.max_head = 256,
                                   .max_headers = 4,
                                   .max_body = 16,
                                   .request_timeout = 5,
                                   .keepalive_timeout = 5,
                                   .max_outbuf = 1 << 20};
    memset(&t, 0, sizeof t);
    if (!(t.base = support_base()) || conn_init(t.base, &cl) < 0)
        return -1;
    http_init(&hl, on_request);
    struct bufferevent *pair[2];
    if (bufferevent_pair_new(t.base, 0, pair) != 0)
        return -1;
    t.end = pair[1];
    bufferevent_enable(t.end, EV_READ | EV_WRITE);
    return http_accept(pair[0], "127.0.0.1", CONN_LISTENER_MAIN);
}

static int teardown(void **state)
{
    (void)state;
    conn_free_all();
    bufferevent_free(t.end);
    support_base_free(t.base);
    return 0;
}

static void send_text(const char *text)
{
    bufferevent_write(t.end, text, strlen(text));
}

/* The connection of this test's client: ids start again at 1 after conn_free_all. */
static struct conn *the_conn(void)
{
    return conn_find(1);
}

struct resp {
    int status;
    char head[1024];
    char body[1024];
    size_t body_len;
};

/* Take one whole answer from the test's end (head_only: to a HEAD, without
 * its body): 1, or 0 when it is not all there. */
static int take_response(int head_only, struct resp *r)
{
    struct evbuffer *in = bufferevent_get_input(t.end);
    struct evbuffer_ptr eoh = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (eoh.pos < 0)
        return 0;
    size_t head_len = (size_t)eoh.pos + 4;
    if (head_len >= sizeof r->head)
        fail_msg("answer head too long");
    memset(r, 0, sizeof *r);
    evbuffer_copyout(in, r->head, head_len);
    r->head[head_len] = '\0';
    const char *cl = strstr(r->head, "\r\nContent-Length: ");
    size_t len = cl && !head_only ? strtoul(cl + 18, NULL, 10) : 0;
    if (len >= sizeof r->body)
        fail_msg("answer body too long");
    if (evbuffer_get_length(in) < head_len + len)
        return 0;
    evbuffer_drain(in, head_len);
    evbuffer_remove(in, r->body, len);
    r->body_len = len;
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
        fail_msg("not an answer: %s", r->head);
    return 1;
}

static void next_response(int head_only, struct resp *r)
{
    int got = 0;
    RUN_UNTIL(t.base, (got = take_response(head_only, r)), 1000);
    if (!got)
        fail_msg("no answer came");
}

/* The value of a header line of the answer ("" when absent). */
static const char *header(const struct resp *r, const char *name)
{
    static char value[256];
    char key[64];
    snprintf(key, sizeof key, "\r\n%s: ", name);
    const char *p = strstr(r->head, key);
    value[0] = '\0';
    if (p) {
        p += strlen(key);
        size_t n = strcspn(p, "\r");
        snprintf(value, sizeof value, "%.*s", (int)n, p);
    }
    return value;
}

static void test_request_whole(void **state)
{
    (void)state;
    const char *parts[] = {"POST /api/it%20ems?x=1&y=tw", "o HTTP/1.1\r\nHost: a\r\nX-Th",
                           "ing: v1\r\nContent-Length: 5\r\n\r\nhel", "lo"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(t.n_reqs, 0); /* not before it is whole */
        send_text(parts[i]);
        support_turn(t.base);
    }
    RUN_UNTIL(t.base, t.n_reqs == 1, 1000);
    assert_int_equal(t.n_reqs, 1);
    struct chatd_http *r = t.reqs[0];
    assert_int_equal(r->method, HTTP_POST);
    assert_string_equal(http_method_name(r->method), "POST");
    assert_string_equal(r->url, "/api/it%20ems?x=1&y=two");
    assert_string_equal(r->path, "/api/it ems");
    assert_string_equal(r->query, "x=1&y=two");
    assert_int_equal(r->n_headers, 3);
    assert_string_equal(http_header_get(r, "host"), "a");
    assert_string_equal(http_header_get(r, "X-THING"), "v1");
    assert_null(http_header_get(r, "X-Other"));
    assert_int_equal(r->body_len, 5);
    assert_string_equal(r->body, "hello");
    assert_true(r->keep_alive);
    assert_false(r->upgrade);
    assert_string_equal(r->peer, "127.0.0.1");
    assert_ptr_equal(conn_find(r->conn_id), the_conn());
    assert_true(http_unanswered(r->conn_id, r));

    http_respond(r, 201, "text/plain", "made", 4, "X-Extra: 1\r\n");
    struct resp a;
    next_response(0, &a);
    assert_int_equal(a.status, 201);
    assert_string_equal(header(&a, "Content-Length"), "4");
    assert_string_equal(header(&a, "Content-Type"), "text/plain");
    assert_string_equal(header(&a, "Connection"), "keep-alive");
    assert_string_equal(header(&a, "X-Extra"), "1");
    assert_memory_equal(a.body, "made", 4);
    assert_int_equal(support_pending(t.end), 0);
    assert_non_null(the_conn());
    assert_int_equal(the_conn()->state, CONN_OPEN);
}

/* Pipelined requests are told one at a time, each after the answer before
 * it, and answered in order: late answers and answers made at once alike. */
static void test_pipelined_in_order(void **state)
{
    (void)state;
    send_text("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        RUN_UNTIL(t.base, t.n_reqs == i + 1, 1000);
        support_run_for(t.base, 20);
        assert_int_equal(t.n_reqs, i + 1); /* the next waits for this answer */
        char path[8];
        snprintf(path, sizeof path, "/%d", i + 1);
        assert_string_equal(t.reqs[i]->path, path);
        answer_path(t.reqs[i]);
    }
    for (int i = 0; i < 3; i++) {
        struct resp a;
        next_response(0, &a);
        assert_int_equal(a.status, 200);
        char body[8];
        snprintf(body, sizeof body, "/%d", i + 1);
        assert_int_equal(a.body_len, strlen(body));
        assert_memory_equal(a.body, body, a.body_len);
        assert_string_equal(header(&a, "Connection"), "keep-alive");
    }

    t.answer_now = 1;
    send_text("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
    RUN_UNTIL(t.base, t.n_reqs == 6, 1000);
    const char *want[] = {"/a", "/b", "/c"};
    for (int i = 0; i < 3; i++) {
        struct resp a;
        next_response(0, &a);
        assert_memory_equal(a.body, want[i], 2);
    }
    assert_int_equal(support_pending(t.end), 0);
    assert_int_equal(the_conn()->state, CONN_OPEN);
}

/* A client that does not read its answers is not read from either until
 * they drain (http.max_outbuf). */
static void test_pipelining_unread_answers(void **state)
{
    (void)state;
    const struct http_limits hl = {.max_head = 256,
                                   .max_headers = 4,
                                   .max_body = 16,
                                   .request_timeout = 5,
                                   .keepalive_timeout = 5,
                                   .max_outbuf = 64};
    http_init(&hl, on_request);
    t.answer_now = 1;
    bufferevent_disable(t.end, EV_READ);
    send_text("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
              "HTTP/1.1\r\n\r\n"
              "GET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
    support_run_for(t.base, 30);
    assert_int_equal(t.n_reqs, 1); /* its answer is over 64 bytes and unread */
    bufferevent_enable(t.end, EV_READ);
    RUN_UNTIL(t.base, t.n_reqs == 3, 1000);
    assert_int_equal(t.n_reqs, 3);
    struct resp a;
    next_response(0, &a);
    assert_int_equal(a.body_len, 71);
    next_response(0, &a);
    assert_memory_equal(a.body, "/b", 2);
    next_response(0, &a);
    assert_memory_equal(a.body, "/c", 2);
}

/* A HEAD gets the headers of its GET and no body. */
static void test_head(void **state)
{
    (void)state;
    t.answer_now = 1;
    send_text("HEAD /abc HTTP/1.1\r\n\r\nGET /abc HTTP/1.1\r\n\r\n");
    RUN_UNTIL(t.base, t.n_reqs == 2, 1000);
    assert_int_equal(t.methods[0], HTTP_HEAD);
    struct resp a;
    next_response(1, &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(header(&a, "Content-Length"), "4");
    /* what follows the head is the next answer, not a body */
    char start[9] = "";
    evbuffer_copyout(bufferevent_get_input(t.end), start, 8);
    assert_string_equal(start, "HTTP/1.1");
    next_response(0, &a);
    assert_int_equal(a.body_len, 4);
    assert_memory_equal(a.body, "/abc", 4);
    assert_int_equal(support_pending(t.end), 0);
}

/* An HTTP/1.0 request without keep-alive is answered, then the connection closes. */
static void test_no_keepalive(void **state)
{
    (void)state;
    t.answer_now = 1;
    send_text("GET /old HTTP/1.0\r\n\r\n");
    RUN_UNTIL(t.base, t.n_reqs == 1, 1000);
    assert_false(t.keep_alive[0]);
    struct resp a;
    next_response(0, &a);
    assert_string_equal(header(&a, "Connection"), "close");
    assert_int_equal(the_conn()->state, CONN_CLOSING);
    support_send_eof(t.end);
    RUN_UNTIL(t.base, conn_count() == 0, 1000);
    assert_int_equal(conn_count(), 0);
}

/* A rejected request is answered with its status and the connection
 * closes: what comes after it is not read, and the client's EOF ends it. */
static void expect_rejected(int status, const char *error)
{
    struct resp a;
    next_response(0, &a);
    assert_int_equal(a.status, status);
    assert_string_equal(header(&a, "Connection"), "close");
    assert_string_equal(header(&a, "Content-Type"), "application/json");
    char want[64];
    snprintf(want, sizeof want, "{\"error\":\"%s\"", error);
    assert_memory_equal(a.body, want, strlen(want));
    assert_int_equal(t.n_reqs, 0);
    struct conn *c = the_conn();
    assert_non_null(c);
    assert_int_equal(c->state, CONN_CLOSING);
    send_text("GET /after HTTP/1.1\r\n\r\n");
    support_run_for(t.base, 30);
    assert_int_equal(t.n_reqs, 0);
    assert_int_equal(support_pending(t.end), 0);
    support_send_eof(t.end);
    RUN_UNTIL(t.base, conn_count() == 0, 1000);
    assert_int_equal(conn_count(), 0);
}

static void test_431_head_too_large(void **state)
{
    (void)state;
    char req[512];
    char value[300];
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX-Big: %s\r\n\r\n", value);
    send_text(req);
    expect_rejected(431, "LIMIT_EXCEEDED");
}

static void test_431_too_many_headers(void **state)
{
    (void)state;
    send_text("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n");
    expect_rejected(431, "LIMIT_EXCEEDED");
}

static void test_headers_at_the_limits(void **state)
{
    (void)state;
    t.answer_now = 1;
    send_text("GET /ok HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
    send_text("POST /ok HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789abcdef");
    RUN_UNTIL(t.base, t.n_reqs == 2, 1000);
    assert_int_equal(t.n_reqs, 2);
    assert_int_equal(t.n_headers[0], 4);
    struct resp a;
    next_response(0, &a);
    assert_int_equal(a.status, 200);
    next_response(0, &a);
    assert_int_equal(a.status, 200);
}

static void test_413_body_too_large(void **state)
{
    (void)state;
    send_text("POST /up HTTP/1.1\r\nContent-Length: 17\r\n\r\n");
    expect_rejected(413, "LIMIT_EXCEEDED");
}

static void test_413_chunked_body_too_large(void **state)
{
    (void)state;
    send_text("POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
              "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n");
    expect_rejected(413, "LIMIT_EXCEEDED");
}

static void test_400_malformed(void **state)
{
    (void)state;
    send_text("NOT HTTP AT ALL\r\n\r\n");
    expect_rejected(400, "BAD_REQUEST");
}

static void test_400_header_name(void **state)
{
    (void)state;
    send_text("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
    expect_rejected(400, "BAD_REQUEST");
}

/* An answer to a request whose connection died goes nowhere. */
static void test_answer_after_gone(void **state)
{
    (void)state;
    send_text("GET /late HTTP/1.1\r\n\r\nGET /later HTTP/1.1\r\n\r\n");
    RUN_UNTIL(t.base, t.n_reqs == 1, 1000);
    struct chatd_http *r = t.reqs[0];
    uint64_t id = r->conn_id;
    conn_abort(conn_find(id)); /* a reset */
    support_turn(t.base);      /* freed */
    assert_null(conn_find(id));
    assert_int_equal(r->conn_id, 0);
    assert_false(http_unanswered(id, r));
    http_respond(r, 200, "text/plain", "late", 4, NULL);
    support_run_for(t.base, 20);
    assert_int_equal(t.n_reqs, 1); /* the one behind it is gone too */
    assert_int_equal(support_pending(t.end), 0);
}

static void test_switch_after_gone(void **state)
{
    (void)state;
    send_text("GET /ws HTTP/1.1\r\n\r\n");
    RUN_UNTIL(t.base, t.n_reqs == 1, 1000);
    conn_abort(conn_find(t.reqs[0]->conn_id));
    support_turn(t.base);
    assert_null(http_switch_protocols(t.reqs[0], "Upgrade: test\r\n"));
    assert_int_equal(support_pending(t.end), 0);
}

/* A client that shuts its side after a request still gets its answer. */
static void test_half_closed_answered(void **state)
{
    (void)state;
    send_text("GET /bye HTTP/1.1\r\n\r\n");
    RUN_UNTIL(t.base, t.n_reqs == 1, 1000);
    support_send_eof(t.end);
    support_turn(t.base);
    assert_non_null(the_conn());
    assert_int_equal(the_conn()->state, CONN_CLOSING);
    answer_path(t.reqs[0]);
    struct resp a;
    next_response(0, &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(header(&a, "Connection"), "close");
    assert_memory_equal(a.body, "/bye", 4);
}

static void test_respond_error(void **state)
{
    (void)state;
    send_text("GET /e1 HTTP/1.1\r\n\r\nGET /e2 HTTP/1.1\r\n\r\nGET /e3 HTTP/1.1\r\n\r\n");
    RUN_UNTIL(t.base, t.n_reqs == 1, 1000);
    http_respond_error(t.reqs[0], CHATD_ERR_NOT_FOUND, 0, "no such thing");
    struct resp a;
    next_response(0, &a);
    assert_int_equal(a.status, 404);
    assert_string_equal(a.body, "{\"error\":\"NOT_FOUND\",\"message\":\"no such thing\"}");

    RUN_UNTIL(t.base, t.n_reqs == 2, 1000);
    http_respond_error(t.reqs[1], CHATD_ERR_INTERNAL, 0, "secret detail");
    next_response(0, &a);
    assert_int_equal(a.status, 500);
    assert_null(strstr(a.body, "secret"));
    assert_non_null(strstr(a.body, "\"message\":\"internal error (ref "));

    RUN_UNTIL(t.base, t.n_reqs == 3, 1000);
    http_respond(t.reqs[2], 204, NULL, NULL, 0, NULL);
    next_response(0, &a);
    assert_int_equal(a.status, 204);
    assert_null(strstr(a.head, "Content-Length"));
}

static void raw_input(struct conn *c)
{
    struct evbuffer *in = conn_input(c);
    size_t n = strlen(t.raw);
    size_t len = evbuffer_get_length(in);
    if (n + len >= sizeof t.raw)
        len = sizeof t.raw - n - 1;
    evbuffer_remove(in, t.raw + n, len);
    t.raw[n + len] = '\0';
}

static const struct conn_ops raw_ops = {.input = raw_input};

/* 101 with the headers given; the connection is the caller's, with the
 * bytes that came behind the request left for its next protocol. */
static void test_switch_protocols(void **state)
{
    (void)state;
    t.switch_now = 1;
    send_text("GET /ws HTTP/1.1\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nAFTER");
    RUN_UNTIL(t.base, t.switched != NULL, 1000);
    struct conn *c = t.switched;
    assert_ptr_equal(c, the_conn());
    assert_true(t.switched_bare);
    size_t len;
    char *got = support_take_all(t.end, &len);
    assert_string_equal(got, "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: test\r\nConnection: Upgrade\r\n\r\n");
    free(got);
    /* reading waits for the next protocol */
    send_text("MORE");
    support_run_for(t.base, 20);
    assert_string_equal(t.raw, "");
    conn_set_ops(c, &raw_ops, NULL);
    conn_pause_read(c, 0);
    conn_process_input(c);
    RUN_UNTIL(t.base, strlen(t.raw) == 9, 1000);
    assert_string_equal(t.raw, "AFTERMORE");
    assert_int_equal(t.n_reqs, 1);
    assert_int_equal(c->state, CONN_OPEN);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_request_whole),
        T(test_pipelined_in_order),
        T(test_pipelining_unread_answers),
        T(test_head),
        T(test_no_keepalive),
        T(test_431_head_too_large),
        T(test_431_too_many_headers),
        T(test_headers_at_the_limits),
        T(test_413_body_too_large),
        T(test_413_chunked_body_too_large),
        T(test_400_malformed),
        T(test_400_header_name),
        T(test_answer_after_gone),
        T(test_switch_after_gone),
        T(test_half_closed_answered),
        T(test_respond_error),
        T(test_switch_protocols),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    metrics_free(); /* once: the counters' cells are cached for the process's life */
    return failed;
}
