/*
 * Unit tests for core/cluster/sentinel.c against a fake Sentinel on loopback
 * (a listener that answers SENTINEL get-master-addr-by-name and SUBSCRIBE in
 * RESP): the next Sentinel asked when one is down, a +switch-master of the
 * master's name followed and one of another name not, asking again while no
 * Sentinel names the master; and the parsing of +switch-master and ROLE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chatd/plugin.h"
#include "config.h"
#include "sentinel.h"
#include "support.h"

static struct {
    struct event_base *base;
    struct evconnlistener *listener;
    int live_port, dead_port;
    const char *answer;          /* the RESP answer to get-master-addr-by-name */
    int asks;                    /* get-master-addr-by-name received */
    struct bufferevent *watcher; /* the connection that subscribed */
    struct settings s;
    char host[64];
    int port, masters; /* the last master named, how many times one was */
} t;

static void on_master(const char *host, int port)
{
    snprintf(t.host, sizeof t.host, "%s", host);
    t.port = port;
    t.masters++;
}

static void fake_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    char *text = calloc(1, n + 1);
    assert_non_null(text);
    evbuffer_remove(in, text, n);
    if (strstr(text, "get-master-addr-by-name")) {
        t.asks++;
        bufferevent_write(bev, t.answer, strlen(t.answer));
    } else if (strstr(text, "SUBSCRIBE")) {
        static const char ok[] = "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
        bufferevent_write(bev, ok, sizeof ok - 1);
        t.watcher = bev;
    }
    free(text);
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (bev == t.watcher)
        t.watcher = NULL;
    bufferevent_free(bev);
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                        void *arg)
{
    (void)l, (void)sa, (void)len, (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(t.base, fd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    bufferevent_setcb(bev, fake_read, NULL, fake_event, NULL);
    bufferevent_enable(bev, EV_READ);
}

static int port_of(evutil_socket_t fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* A loopback port nothing listens on. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    int port = port_of(fd);
    close(fd);
    return port;
}

/* Sentinels: the dead port first, then the fake; the master's name "m". */
static int setup(void **state)
{
    (void)state;
    memset(&t, 0, sizeof t);
    t.base = support_base();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    t.listener = evconnlistener_new_bind(t.base, fake_accept, NULL,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                         (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(t.listener);
    t.live_port = port_of(evconnlistener_get_fd(t.listener));
    t.dead_port = dead_port();
    t.answer = "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6390\r\n";
    char sentinels[128], err[256];
    snprintf(sentinels, sizeof sentinels, "redis.sentinels=[\"127.0.0.1:%d\", \"127.0.0.1:%d\"]",
             t.dead_port, t.live_port);
    const char *ov[] = {sentinels, "redis.master_name=\"m\""};
    if (config_load(NULL, ov, 2, &t.s, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sentinel_free();
    if (t.watcher)
        bufferevent_free(t.watcher);
    evconnlistener_free(t.listener);
    support_base_free(t.base);
    config_free(&t.s);
    return 0;
}

static void test_the_next_sentinel_is_asked_when_one_is_down(void **state)
{
    (void)state;
    assert_true(sentinel_enabled(&t.s));
    assert_int_equal(sentinel_init(t.base, &t.s, on_master), 0);
    RUN_UNTIL(t.base, t.masters > 0, 3000);
    assert_int_equal(t.masters, 1);
    assert_string_equal(t.host, "127.0.0.1");
    assert_int_equal(t.port, 6390);
    assert_int_equal(t.asks, 1);
}

static void send_switch(const char *payload)
{
    char msg[256];
    int n =
        snprintf(msg, sizeof msg, "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%zu\r\n%s\r\n",
                 strlen(payload), payload);
    bufferevent_write(t.watcher, msg, (size_t)n);
}

static void test_switch_master_of_its_name_is_followed(void **state)
{
    (void)state;
    assert_int_equal(sentinel_init(t.base, &t.s, on_master), 0);
    /* the watch tries the dead Sentinel first, then the fake a second later;
     * subscribed, it asks again (a failover may have passed meanwhile) */
    RUN_UNTIL(t.base, t.watcher && t.masters >= 2, 4000);
    assert_non_null(t.watcher);
    assert_int_equal(t.masters, 2);
    send_switch("other 127.0.0.1 6390 127.0.0.1 7000");
    support_run_for(t.base, 200);
    assert_int_equal(t.masters, 2);
    send_switch("m 127.0.0.1 6390 127.0.0.2 6391");
    RUN_UNTIL(t.base, t.masters == 3, 2000);
    assert_int_equal(t.masters, 3);
    assert_string_equal(t.host, "127.0.0.2");
    assert_int_equal(t.port, 6391);
}

static void test_asking_goes_on_while_no_sentinel_names_the_master(void **state)
{
    (void)state;
    t.answer = "*-1\r\n"; /* no such master */
    assert_int_equal(sentinel_init(t.base, &t.s, on_master), 0);
    RUN_UNTIL(t.base, t.asks >= 2, 3000);
    assert_true(t.asks >= 2);
    assert_int_equal(t.masters, 0);
    /* named once a Sentinel knows it */
    t.answer = "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6391\r\n";
    sentinel_ask();
    RUN_UNTIL(t.base, t.masters > 0, 3000);
    assert_int_equal(t.port, 6391);
}

static void test_parse_switch(void **state)
{
    (void)state;
    char host[64];
    int port = 0;
    assert_int_equal(
        sentinel_parse_switch("m 10.0.0.1 6379 10.0.0.2 6380", "m", host, sizeof host, &port), 0);
    assert_string_equal(host, "10.0.0.2");
    assert_int_equal(port, 6380);
    assert_int_equal(
        sentinel_parse_switch("mm 10.0.0.1 6379 10.0.0.2 6380", "m", host, sizeof host, &port),
        CHATD_EINVAL);
    assert_int_equal(sentinel_parse_switch("m 10.0.0.1 6379", "m", host, sizeof host, &port),
                     CHATD_EINVAL);
    assert_int_equal(
        sentinel_parse_switch("m 10.0.0.1 6379 10.0.0.2 70000", "m", host, sizeof host, &port),
        CHATD_EINVAL);
    assert_int_equal(sentinel_parse_switch(NULL, "m", host, sizeof host, &port), CHATD_EINVAL);
    char tiny[4];
    assert_int_equal(
        sentinel_parse_switch("m 10.0.0.1 6379 10.0.0.2 6380", "m", tiny, sizeof tiny, &port),
        CHATD_EINVAL);
}

static void test_role_is_master(void **state)
{
    (void)state;
    redisReply master = {.type = REDIS_REPLY_STRING, .str = "master", .len = 6};
    redisReply slave = {.type = REDIS_REPLY_STRING, .str = "slave", .len = 5};
    redisReply *one[] = {&master}, *other[] = {&slave};
    redisReply role = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = one};
    assert_true(sentinel_role_is_master(&role));
    role.element = other;
    assert_false(sentinel_role_is_master(&role));
    redisReply error = {.type = REDIS_REPLY_ERROR, .str = "ERR", .len = 3};
    assert_false(sentinel_role_is_master(&error));
    assert_false(sentinel_role_is_master(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_the_next_sentinel_is_asked_when_one_is_down, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_switch_master_of_its_name_is_followed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_asking_goes_on_while_no_sentinel_names_the_master,
                                        setup, teardown),
        cmocka_unit_test(test_parse_switch),
        cmocka_unit_test(test_role_is_master),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
