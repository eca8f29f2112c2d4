/* Unit tests for core/base/log.h: lines whole, a reopen (SIGHUP, after
 * rotation) that never pulls the file from under a thread writing to it, and
 * log.format "json": every line one valid object whatever the message holds,
 * with the connection and request ids when given. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/chatd-test-log-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_close();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_reopen_after_rotation(void **state)
{
    (void)state;
    char path[300], rotated[310];
    snprintf(path, sizeof path, "%s/chatd.log", dir);
    snprintf(rotated, sizeof rotated, "%s.1", path);
    assert_int_equal(log_open(path, CHATD_LOG_INFO), 0);
    log_info("before the rotation");
    assert_int_equal(rename(path, rotated), 0);
    log_info("still to the rotated file");
    log_reopen();
    log_info("after the reopen");
    assert_non_null(strstr(slurp(rotated), "still to the rotated file"));
    assert_null(strstr(slurp(rotated), "after the reopen"));
    char *now = slurp(path);
    assert_non_null(now);
    assert_non_null(strstr(now, "after the reopen"));
    assert_null(strstr(now, "before the rotation"));
}

static volatile int writing;

static void *writer(void *arg)
{
    (void)arg;
    for (int i = 0; writing; i++)
        log_msg(CHATD_LOG_INFO, "worker", "line %d of a worker", i);
    return NULL;
}

/* A worker logs throughout many reopens: every line is whole, and (under
 * AddressSanitizer) no write touches a closed stream. */
static void test_reopen_while_workers_write(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/busy.log", dir);
    assert_int_equal(log_open(path, CHATD_LOG_INFO), 0);
    writing = 1;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, NULL), 0);
    for (int i = 0; i < 200; i++)
        log_reopen();
    writing = 0;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    log_close();
    char *text = slurp(path);
    assert_non_null(text);
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        assert_non_null(end);
        *end = '\0';
        assert_non_null(strstr(line, " worker: line "));
        line = end + 1;
    }
}

/* The lines of path, each parsed as JSON (an object), NULL-terminated. */
static json_t **json_lines(const char *path, size_t *n)
{
    char *text = slurp(path);
    assert_non_null(text);
    static json_t *objs[64];
    *n = 0;
    for (char *line = text; *line && *n < 63;) {
        char *end = strchr(line, '\n');
        assert_non_null(end); /* the last line is whole too */
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)(end - line), 0, &err);
        if (!o)
            fail_msg("not JSON (%s): %.*s", err.text, (int)(end - line), line);
        assert_true(json_is_object(o));
        objs[(*n)++] = o;
        line = end + 1;
    }
    objs[*n] = NULL;
    return objs;
}

static const char *str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (!v)
        fail_msg("no string member '%s'", key);
    return v;
}

static void test_json_lines(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/json.log", dir);
    assert_int_equal(log_open(path, CHATD_LOG_INFO), 0);
    log_set_format(LOG_FORMAT_JSON);
    log_info("plain");
    log_msg(CHATD_LOG_WARN, "q\"uo\\te",
            "a \"quote\", a\nnewline\r\t, \x01\x1f\x7f, bad \xff\xc3(\xe2\x82 "
            "end, fine \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    log_ids_msg(CHATD_LOG_ERROR, "core", 42, "r\"1\n\xff", "about a request");
    log_ids_msg(CHATD_LOG_INFO, "core", 7, NULL, "about a connection");
    log_debug("not at info");
    char big[3000];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_info("%s", big); /* cut at the line's limit, still valid */
    log_set_format(LOG_FORMAT_TEXT);
    log_close();

    size_t n;
    json_t **o = json_lines(path, &n);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        const char *t = str(o[i], "time");
        assert_int_equal(strlen(t), 24); /* 2024-01-02T03:04:05.678Z */
        assert_int_equal(t[23], 'Z');
        str(o[i], "level"), str(o[i], "module"), str(o[i], "message");
    }
    assert_string_equal(str(o[0], "level"), "info");
    assert_string_equal(str(o[0], "module"), "core");
    assert_string_equal(str(o[0], "message"), "plain");
    assert_null(json_object_get(o[0], "conn"));
    assert_null(json_object_get(o[0], "request"));
    assert_string_equal(str(o[1], "level"), "warn");
    assert_string_equal(str(o[1], "module"), "q\"uo\\te");
    /* each byte that starts no UTF-8 sequence is U+FFFD; valid ones are kept */
    assert_string_equal(str(o[1], "message"),
                        "a \"quote\", a\nnewline\r\t, \x01\x1f\x7f, bad \xef\xbf\xbd\xef\xbf\xbd("
                        "\xef\xbf\xbd\xef\xbf\xbd end, fine \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_string_equal(str(o[2], "level"), "error");
    assert_int_equal(json_integer_value(json_object_get(o[2], "conn")), 42);
    assert_string_equal(str(o[2], "request"), "r\"1\n\xef\xbf\xbd");
    assert_int_equal(json_integer_value(json_object_get(o[3], "conn")), 7);
    assert_null(json_object_get(o[3], "request"));
    assert_int_equal(strlen(str(o[4], "message")), 2047);
    for (size_t i = 0; i < n; i++)
        json_decref(o[i]);
}

static void test_text_ids(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/text.log", dir);
    assert_int_equal(log_open(path, CHATD_LOG_INFO), 0);
    log_ids_msg(CHATD_LOG_INFO, "core", 42, "r1", "about a request");
    log_ids_msg(CHATD_LOG_INFO, "core", 7, NULL, "about a\nconnection");
    log_ids_msg(CHATD_LOG_INFO, "core", 0, "r2", "a request alone");
    log_close();
    char *text = slurp(path);
    assert_non_null(strstr(text, " info core: conn 42 request r1: about a request\n"));
    assert_non_null(strstr(text, " info core: conn 7: about a connection\n"));
    assert_non_null(strstr(text, " info core: request r2: a request alone\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_after_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_while_workers_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_ids, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
