/* Unit tests for push/settings.c: chatd-push's settings from chatd's file,
 * checked against the push plugin's declared settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "settings.h"

static char conf_path[4096];

static const char *const base_conf =
    "redis = { host = \"127.0.0.1\"; port = 6390; };\n"
    "plugins = ( { name = \"push\"; backend = \"redis\"; url = \"http://127.0.0.1:9/p\"; } );\n";

static void write_conf(const char *text)
{
    const char *dir = getenv("TMPDIR");
    snprintf(conf_path, sizeof conf_path, "%s/chatd-test-push-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(conf_path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static int teardown(void **state)
{
    (void)state;
    if (conf_path[0])
        unlink(conf_path);
    conf_path[0] = '\0';
    return 0;
}

/* Read base_conf with the overrides: pconf_read's status, err filled. */
static int read_with(const char *const *ov, int n, struct settings *s, struct pconf *c, char *err,
                     size_t len)
{
    write_conf(base_conf);
    if (config_load(conf_path, ov, n, s, err, len) < 0)
        fail_msg("config_load: %s", err);
    return pconf_read(s, conf_path, c, err, len);
}

static void test_defaults(void **state)
{
    (void)state;
    struct settings s;
    struct pconf c;
    char err[256] = "";
    assert_int_equal(read_with(NULL, 0, &s, &c, err, sizeof err), 0);
    assert_string_equal(c.redis_host, "127.0.0.1");
    assert_int_equal(c.redis_port, 6390);
    assert_string_equal(c.stream, "chatd:push");
    assert_string_equal(c.group, "chatd-push");
    assert_string_equal(c.dead_stream, "chatd:push:dead");
    char pid[32];
    snprintf(pid, sizeof pid, "-%ld", (long)getpid());
    assert_non_null(strstr(c.consumer, pid)); /* host name-pid */
    assert_int_equal(c.max_in_flight, 64);
    assert_int_equal(c.max_attempts, 10);
    assert_int_equal(c.claim_after_ms, 30000);
    assert_int_equal(c.delete_delivered, 1);
    assert_string_equal(c.secret, "");
    assert_null(c.ca_file);
    config_free(&s);
}

static void test_overrides_and_derived_names(void **state)
{
    (void)state;
    const char *ov[] = {"plugins.push.stream=\"s1\"", "plugins.push.consumer=\"w1\"",
                        "plugins.push.delete_delivered=false", "plugins.push.max_attempts=3"};
    struct settings s;
    struct pconf c;
    char err[256] = "";
    assert_int_equal(read_with(ov, 4, &s, &c, err, sizeof err), 0);
    assert_string_equal(c.stream, "s1");
    assert_string_equal(c.dead_stream, "s1:dead");
    assert_string_equal(c.consumer, "w1");
    assert_int_equal(c.delete_delivered, 0);
    assert_int_equal(c.max_attempts, 3);
    config_free(&s);
}

/* Each message names the file (and the line, for what the file says). */
static void test_bad_values_name_the_setting(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"plugins.push.max_in_flight=0", "'plugins.push.max_in_flight': 0 is out of range"},
        {"plugins.push.claim_afer_ms=5", "'plugins.push.claim_afer_ms': unknown setting"},
        {"plugins.push.timeout_ms=\"5s\"", "'plugins.push.timeout_ms': expected an integer"},
        {"plugins.push.url=\"ftp://x\"", "'plugins.push.url': must start with"},
        {"plugins.push.backend=\"webhook\"", "'plugins.push.backend'"},
        {"plugins.push.group=\"\"", "'plugins.push.group': must not be empty"},
        {"plugins.push.dead_stream=\"chatd:push\"", "'plugins.push.dead_stream'"},
        {"plugins.push.backoff_ms=5000", "'plugins.push.backoff_max_ms'"},
        {"plugins.push.block_ms=16000", "'plugins.push.block_ms'"},
        {"plugins.push.delete_delivered=1", "'plugins.push.delete_delivered': expected true"},
        {"redis.host=\"\"", "'redis.host'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ov[] = {cases[i][0], "plugins.push.backoff_max_ms=4000"};
        int n = strstr(cases[i][0], "backoff_ms") ? 2 : 1;
        struct settings s;
        struct pconf c;
        char err[256] = "";
        assert_int_equal(read_with(ov, n, &s, &c, err, sizeof err), -1);
        if (!strstr(err, cases[i][1]) || strncmp(err, conf_path, strlen(conf_path)) != 0)
            fail_msg("%s: \"%s\" does not say %s", cases[i][0], err, cases[i][1]);
        config_free(&s);
        teardown(NULL);
    }
}

static void test_no_push_entry(void **state)
{
    (void)state;
    write_conf("redis = { host = \"127.0.0.1\"; };\n");
    struct settings s;
    struct pconf c;
    char err[256] = "";
    assert_int_equal(config_load(conf_path, NULL, 0, &s, err, sizeof err), 0);
    assert_int_equal(pconf_read(&s, conf_path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "no entry named \"push\""));
    config_free(&s);
}

static void test_url_for_log_drops_credentials_and_query(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"https://user:pa55@push.example:8443/a/b?token=x#f", "https://push.example:8443/a/b"},
        {"http://push.example/hook", "http://push.example/hook"},
        {"http://push.example?k=v", "http://push.example"},
        {"http://u@h", "http://h"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        pconf_url_for_log(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_defaults, teardown),
        cmocka_unit_test_teardown(test_overrides_and_derived_names, teardown),
        cmocka_unit_test_teardown(test_bad_values_name_the_setting, teardown),
        cmocka_unit_test_teardown(test_no_push_entry, teardown),
        cmocka_unit_test(test_url_for_log_drops_credentials_and_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
