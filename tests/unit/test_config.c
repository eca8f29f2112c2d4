/* Unit tests for core/config.h: file parsing, --set overrides, validation. */
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
#include "config_check.h"

/* The current temporary file: replaced by the next write_conf(), removed by
 * the teardown. */
static char conf_path[4096];

static const char *write_conf(const char *text)
{
    if (conf_path[0])
        unlink(conf_path);
    const char *dir = getenv("TMPDIR");
    snprintf(conf_path, sizeof conf_path, "%s/chatd-test-config-XXXXXX",
             dir && *dir ? dir : "/tmp");
    int fd = mkstemp(conf_path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
    return conf_path;
}

static int teardown(void **state)
{
    (void)state;
    if (conf_path[0])
        unlink(conf_path);
    conf_path[0] = '\0';
    return 0;
}

/* Load expecting success. */
static void load_ok(const char *file, const char *const *ov, int n, struct settings *s)
{
    char err[512] = "";
    int rc = config_load(file, ov, n, s, err, sizeof err);
    if (rc != 0)
        fail_msg("config_load failed (%d): %s", rc, err);
}

/* Load expecting failure; returns the message in err. */
static void load_fail(const char *file, const char *const *ov, int n, char *err, size_t len)
{
    struct settings s;
    err[0] = '\0';
    int rc = config_load(file, ov, n, &s, err, len);
    if (rc >= 0) {
        config_free(&s);
        fail_msg("config_load succeeded where it should fail");
    }
    assert_true(err[0] != '\0');
    /* Freeing after a failed load must be harmless. */
    config_free(&s);
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("expected \"%s\" in \"%s\"", (needle), (hay));                                \
    } while (0)

static void test_defaults(void **state)
{
    (void)state;
    struct settings s;
    load_ok(NULL, NULL, 0, &s);
    assert_string_equal(s.listen, "127.0.0.1:8080");
    assert_string_equal(s.data_dir, "chatd-data");
    assert_int_equal(s.max_connections, 100000);
    assert_int_equal(s.shutdown_timeout, 10);
    assert_string_equal(s.plugin_dir, "");
    assert_string_equal(s.sql_dir, "");
    assert_int_equal(s.http_max_head, 8192);
    assert_int_equal(s.http_max_body, 65536);
    assert_int_equal(s.http_keepalive_timeout, 60);
    assert_string_equal(s.web_root, "");
    assert_non_null(s.allowed_origins);
    assert_null(s.allowed_origins[0]);
    assert_int_equal(s.ws_max_message, 65536);
    assert_int_equal(s.ws_ping_interval, 30);
    assert_int_equal(s.ws_idle_timeout, 75);
    assert_int_equal(s.ws_handshake_timeout, 10);
    assert_int_equal(s.ws_max_outbuf, 4 << 20);
    assert_int_equal(s.session_ttl, 86400);
    assert_string_equal(s.session_backend, "sqlite");
    assert_int_equal(s.storage_readers, 2);
    assert_int_equal(s.storage_cpu_workers, 2);
    assert_int_equal(s.storage_batch_max, 128);
    assert_int_equal(s.storage_batch_wait_us, 0);
    assert_int_equal(s.storage_retries, 5);
    assert_string_equal(s.sqlite_path, "chatd.db");
    assert_string_equal(s.sqlite_synchronous, "full");
    assert_int_equal(s.sqlite_busy_timeout, 5000);
    assert_string_equal(s.log_level, "info");
    assert_string_equal(s.log_file, "");
    assert_non_null(s.plugins);
    assert_true(json_is_array(s.plugins));
    assert_int_equal(json_array_size(s.plugins), 0);
    config_free(&s);
    /* A second free is harmless: config_free clears what it freed. */
    config_free(&s);
}

static void test_empty_file_gives_defaults(void **state)
{
    (void)state;
    struct settings s;
    load_ok(write_conf("# nothing here\n"), NULL, 0, &s);
    assert_string_equal(s.listen, "127.0.0.1:8080");
    assert_int_equal(s.http_max_head, 8192);
    assert_int_equal(s.ws_max_message, 65536);
    assert_int_equal(s.session_ttl, 86400);
    assert_int_equal(json_array_size(s.plugins), 0);
    config_free(&s);
}

static const char full_conf[] =
    "server = {\n"
    "  listen = \"0.0.0.0:9000\";\n"
    "  data_dir = \"/var/lib/chatd\";\n"
    "  max_connections = 500;\n"
    "};\n"
    "http = {\n"
    "  max_head_size = 4096;\n"
    "  max_body_size = 1024;\n"
    "  allowed_origins = [\"https://a.example\", \"https://b.example\"];\n"
    "};\n"
    "ws = {\n"
    "  max_message_size = 2048;\n"
    "  ping_interval = 15;\n"
    "  max_outbuf = 4294967296L;\n"
    "};\n"
    "session = { ttl = 3600; backend = \"sqlite\"; };\n"
    "storage = {\n"
    "  readers = 4;\n"
    "  sqlite = { path = \"x.db\"; synchronous = \"normal\"; busy_timeout = 0; };\n"
    "};\n"
    "log = { level = \"debug\"; file = \"/tmp/chatd.log\"; };\n"
    "plugins = (\n"
    "  {\n"
    "    name = \"auth\";\n"
    "    backend = \"sqlite\";\n"
    "    argon2_m_cost = 19456;\n"
    "    strict = true;\n"
    "    ratio = 0.5;\n"
    "    tags = [\"x\", \"y\"];\n"
    "    nested = { depth = 2; };\n"
    "  },\n"
    "  { name = \"other\"; }\n"
    ");\n";

static void test_values_from_file(void **state)
{
    (void)state;
    struct settings s;
    load_ok(write_conf(full_conf), NULL, 0, &s);
    assert_string_equal(s.listen, "0.0.0.0:9000");
    assert_string_equal(s.data_dir, "/var/lib/chatd");
    assert_int_equal(s.max_connections, 500);
    assert_int_equal(s.shutdown_timeout, 10); /* not in the file: default */
    assert_int_equal(s.http_max_head, 4096);
    assert_int_equal(s.http_max_body, 1024);
    assert_non_null(s.allowed_origins);
    assert_string_equal(s.allowed_origins[0], "https://a.example");
    assert_string_equal(s.allowed_origins[1], "https://b.example");
    assert_null(s.allowed_origins[2]);
    assert_int_equal(s.ws_max_message, 2048);
    assert_int_equal(s.ws_ping_interval, 15);
    assert_true(s.ws_max_outbuf == 4294967296LL);
    assert_int_equal(s.session_ttl, 3600);
    assert_int_equal(s.storage_readers, 4);
    assert_string_equal(s.sqlite_path, "x.db");
    assert_string_equal(s.sqlite_synchronous, "normal");
    assert_int_equal(s.sqlite_busy_timeout, 0);
    assert_string_equal(s.log_level, "debug");
    assert_string_equal(s.log_file, "/tmp/chatd.log");

    assert_int_equal(json_array_size(s.plugins), 2);
    json_t *p = json_array_get(s.plugins, 0);
    assert_true(json_is_object(p));
    assert_string_equal(json_string_value(json_object_get(p, "name")), "auth");
    assert_string_equal(json_string_value(json_object_get(p, "backend")), "sqlite");
    assert_int_equal(json_integer_value(json_object_get(p, "argon2_m_cost")), 19456);
    assert_true(json_is_true(json_object_get(p, "strict")));
    assert_true(json_is_real(json_object_get(p, "ratio")));
    assert_true(json_real_value(json_object_get(p, "ratio")) == 0.5);
    json_t *tags = json_object_get(p, "tags");
    assert_true(json_is_array(tags));
    assert_int_equal(json_array_size(tags), 2);
    assert_string_equal(json_string_value(json_array_get(tags, 1)), "y");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(p, "nested"), "depth")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(s.plugins, 1), "name")),
                        "other");
    config_free(&s);
}

static void test_overrides(void **state)
{
    (void)state;
    struct settings s;
    const char *ov[] = {
        "http.max_body_size=1000",
        "server.listen=\"1.2.3.4:9\"",
        "server.data_dir=/tmp/x",
        "http.allowed_origins=[\"a\",\"b\"]",
    };
    load_ok(NULL, ov, 4, &s);
    assert_int_equal(s.http_max_body, 1000);
    assert_string_equal(s.listen, "1.2.3.4:9");
    assert_string_equal(s.data_dir, "/tmp/x");
    assert_non_null(s.allowed_origins);
    assert_string_equal(s.allowed_origins[0], "a");
    assert_string_equal(s.allowed_origins[1], "b");
    assert_null(s.allowed_origins[2]);
    /* Untouched settings keep their defaults. */
    assert_int_equal(s.http_max_head, 8192);
    config_free(&s);
}

static void test_overrides_win_over_file(void **state)
{
    (void)state;
    struct settings s;
    const char *ov[] = {
        "http.max_body_size=1000",      "server.listen=\"1.2.3.4:9\"",
        "http.allowed_origins=[\"c\"]", "storage.sqlite.path=other.db",
        "ws.max_outbuf=4096",
    };
    load_ok(write_conf(full_conf), ov, 5, &s);
    assert_int_equal(s.http_max_body, 1000);
    assert_string_equal(s.listen, "1.2.3.4:9");
    assert_string_equal(s.allowed_origins[0], "c");
    assert_null(s.allowed_origins[1]);
    assert_string_equal(s.sqlite_path, "other.db");
    assert_int_equal(s.ws_max_outbuf, 4096);
    /* From the file, not overridden. */
    assert_int_equal(s.http_max_head, 4096);
    assert_string_equal(s.data_dir, "/var/lib/chatd");
    config_free(&s);
}

static void test_later_override_wins(void **state)
{
    (void)state;
    struct settings s;
    const char *ov[] = {"ws.ping_interval=5", "ws.ping_interval=7"};
    load_ok(NULL, ov, 2, &s);
    assert_int_equal(s.ws_ping_interval, 7);
    config_free(&s);
}

static void test_plugin_override_by_name(void **state)
{
    (void)state;
    struct settings s;
    const char *ov[] = {
        "plugins.auth.argon2_m_cost=64",
        "plugins.auth.added=\"new\"",
        "plugins.other.flag=true",
    };
    load_ok(write_conf(full_conf), ov, 3, &s);
    assert_int_equal(json_array_size(s.plugins), 2);
    json_t *auth = json_array_get(s.plugins, 0);
    assert_string_equal(json_string_value(json_object_get(auth, "name")), "auth");
    assert_int_equal(json_integer_value(json_object_get(auth, "argon2_m_cost")), 64);
    assert_string_equal(json_string_value(json_object_get(auth, "added")), "new");
    /* The rest of the entry is untouched. */
    assert_string_equal(json_string_value(json_object_get(auth, "backend")), "sqlite");
    json_t *other = json_array_get(s.plugins, 1);
    assert_true(json_is_true(json_object_get(other, "flag")));
    assert_null(json_object_get(auth, "flag"));
    config_free(&s);
}

static void test_plugin_override_by_index(void **state)
{
    (void)state;
    struct settings s;
    const char *ov[] = {"plugins.[1].level=3"};
    load_ok(write_conf(full_conf), ov, 1, &s);
    json_t *other = json_array_get(s.plugins, 1);
    assert_string_equal(json_string_value(json_object_get(other, "name")), "other");
    assert_int_equal(json_integer_value(json_object_get(other, "level")), 3);
    config_free(&s);
}

static void test_err_missing_file(void **state)
{
    (void)state;
    char err[512];
    load_fail("/nonexistent/dir/chatd.conf", NULL, 0, err, sizeof err);
    assert_contains(err, "/nonexistent/dir/chatd.conf");
}

static void test_err_syntax(void **state)
{
    (void)state;
    char err[512], want[4200];
    const char *f = write_conf("server = {\n  listen = \"x\";\n  max_connections = ;\n};\n");
    load_fail(f, NULL, 0, err, sizeof err);
    snprintf(want, sizeof want, "%s:3", f);
    assert_contains(err, want);
}

static void test_err_unknown_setting(void **state)
{
    (void)state;
    char err[512], want[4200];
    const char *f = write_conf("http = {\n  max_body_size = 10;\n  nope = 1;\n};\n");
    load_fail(f, NULL, 0, err, sizeof err);
    snprintf(want, sizeof want, "%s:3", f);
    assert_contains(err, want);
    assert_contains(err, "'http.nope'");
}

static void test_err_unknown_top_level(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("servr = { listen = \"x\"; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "servr");
    load_fail(write_conf("verbose = true;\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "verbose");
}

static void test_err_unknown_group(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("http = {\n  tls = { cert = \"c\"; };\n};\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "http.tls");
    /* A known setting written as a group. */
    load_fail(write_conf("ws = { ping_interval = { a = 1; }; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "ws.ping_interval");
}

static void test_err_unknown_override(void **state)
{
    (void)state;
    char err[512];
    const char *ov[] = {"http.nope=1"};
    load_fail(NULL, ov, 1, err, sizeof err);
    assert_contains(err, "'http.nope'");
}

static void test_err_malformed_override(void **state)
{
    (void)state;
    char err[512];
    const char *ov1[] = {"http.max_body_size"};
    load_fail(NULL, ov1, 1, err, sizeof err);
    assert_contains(err, "http.max_body_size");
    const char *ov2[] = {"=5"};
    load_fail(NULL, ov2, 1, err, sizeof err);
}

static void test_err_wrong_type(void **state)
{
    (void)state;
    char err[512], want[4200];
    const char *f = write_conf("ws = {\n  ping_interval = \"x\";\n};\n");
    load_fail(f, NULL, 0, err, sizeof err);
    assert_contains(err, "ws.ping_interval");
    snprintf(want, sizeof want, "%s:2", f);
    assert_contains(err, want);

    /* A number where a string is expected. */
    load_fail(write_conf("server = { listen = 8080; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "server.listen");

    /* A float where an integer is expected. */
    load_fail(write_conf("session = { ttl = 1.5; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "session.ttl");

    /* A scalar where a list is expected, and a list of non-strings. */
    load_fail(write_conf("http = { allowed_origins = \"a\"; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "http.allowed_origins");
    load_fail(write_conf("http = { allowed_origins = [1, 2]; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "http.allowed_origins");

    /* The same through --set. */
    const char *ov[] = {"ws.ping_interval=\"x\""};
    load_fail(NULL, ov, 1, err, sizeof err);
    assert_contains(err, "ws.ping_interval");
}

static void test_err_out_of_range(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("http = { max_head_size = 100; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "http.max_head_size");
    assert_contains(err, "range");

    load_fail(write_conf("ws = { ping_interval = 0; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "ws.ping_interval");
    assert_contains(err, "range");

    load_fail(write_conf("ws = { max_outbuf = 4294967297L; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "ws.max_outbuf");
    assert_contains(err, "range");

    const char *ov[] = {"storage.readers=65"};
    load_fail(NULL, ov, 1, err, sizeof err);
    assert_contains(err, "storage.readers");
    assert_contains(err, "range");

    const char *ov2[] = {"http.max_body_size=-1"};
    load_fail(NULL, ov2, 1, err, sizeof err);
    assert_contains(err, "range");
}

/* libconfig alone reads 4294967297 as 1: every integer is read as 64 bits. */
static void test_integers_are_64_bits(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("session = { ttl = 4294967297; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "session.ttl");
    assert_contains(err, "4294967297 is out of range");
    assert_contains(err, ":1:");

    const char *ov[] = {"ws.max_message_size=4295032832"};
    load_fail(NULL, ov, 1, err, sizeof err);
    assert_contains(err, "4295032832 is out of range");

    const char *ov2[] = {"session.ttl=99999999999999"};
    load_fail(NULL, ov2, 1, err, sizeof err);
    assert_contains(err, "99999999999999 is out of range");

    /* Past 64 bits: named as written. */
    const char *ov3[] = {"session.ttl=-99999999999999999999"};
    load_fail(NULL, ov3, 1, err, sizeof err);
    assert_contains(err, "-99999999999999999999 is out of range");

    struct settings s;
    load_ok(write_conf("ws = { max_outbuf = 4294967296; };\n"
                       "# 99999999999 in a comment stays\n"
                       "log = { file = \"a99999999999\"; };\n"),
            NULL, 0, &s);
    assert_true(s.ws_max_outbuf == 4294967296LL);
    assert_string_equal(s.log_file, "a99999999999");
    config_free(&s);
}

static void test_err_choice(void **state)
{
    (void)state;
    char err[512];
    const char *bad[] = {"off", "bogus", "\"FULL\""};
    for (int i = 0; i < 3; i++) {
        char ov[64];
        snprintf(ov, sizeof ov, "storage.sqlite.synchronous=%s", bad[i]);
        const char *o[] = {ov};
        load_fail(NULL, o, 1, err, sizeof err);
        assert_contains(err, "storage.sqlite.synchronous");
        assert_contains(err, "full or normal");
    }
    load_fail(write_conf("\n\nsession = { backend = \"postgres\"; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, ":3:");
    assert_contains(err, "session.backend");
}

static void test_err_settings_together(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("ws = {\n  ping_interval = 30;\n  idle_timeout = 20;\n};\n"), NULL, 0, err,
              sizeof err);
    assert_contains(err, ":3:");
    assert_contains(err, "ws.idle_timeout");
    const char *ov[] = {"ws.ping_interval=75"};
    load_fail(NULL, ov, 1, err, sizeof err);
    assert_contains(err, "ws.ping_interval");

    load_fail(write_conf("http = {\n  web_root = \"/no/such/dir\";\n};\n"), NULL, 0, err,
              sizeof err);
    assert_contains(err, ":2:");
    assert_contains(err, "http.web_root");

    struct settings s;
    const char *ok[] = {"http.web_root=\"/tmp\"", "http.max_headers=100"};
    load_ok(NULL, ok, 2, &s);
    assert_int_equal(s.http_max_headers, 100);
    config_free(&s);
}

/* config_load with server.listen and admin.listen set: 0 (admin.listen read
 * as given), or its error with the message in err. */
static int load_listen(const char *main_addr, const char *admin_addr, char *err, size_t len)
{
    char main_ov[64], admin_ov[64];
    snprintf(main_ov, sizeof main_ov, "server.listen=\"%s\"", main_addr);
    snprintf(admin_ov, sizeof admin_ov, "admin.listen=\"%s\"", admin_addr);
    const char *ovs[] = {main_ov, admin_ov};
    struct settings s;
    err[0] = '\0';
    int rc = config_load(NULL, ovs, 2, &s, err, len);
    if (rc == 0)
        assert_string_equal(s.admin_listen, admin_addr);
    config_free(&s);
    return rc;
}

/* server.listen and admin.listen: numeric HOST:PORT, and not the same address. */
static void test_listen_addresses(void **state)
{
    (void)state;
    struct settings s;
    char err[512];
    load_ok(NULL, NULL, 0, &s);
    assert_string_equal(s.admin_listen, "");
    config_free(&s);
    static const char *const good[] = {"127.0.0.1:9090", "[::1]:9090", ":9090",
                                       "127.0.0.1:0",    "[::1]:8080", "0.0.0.0:9090"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (load_listen("127.0.0.1:8080", good[i], err, sizeof err) != 0)
            fail_msg("admin.listen \"%s\" refused: %s", good[i], err);
    /* port 0 on both: two free ports, no clash */
    assert_int_equal(load_listen("127.0.0.1:0", "127.0.0.1:0", err, sizeof err), 0);

    static const char *const bad[] = {"9090",          "localhost:9090", "127.0.0.1:",
                                      "127.0.0.1:x",   "127.0.0.1:-1",   "127.0.0.1:65536",
                                      "[::1:9090",     "::1]:9090",      "[127.0.0.1]:9090",
                                      "127.0.0.1: 90", "1.2.3.4.5:90"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_true(load_listen("127.0.0.1:8080", bad[i], err, sizeof err) < 0);
        assert_contains(err, "setting 'admin.listen'");
        assert_contains(err, "not HOST:PORT");
    }
    load_fail(write_conf("admin = {\n  listen = \"nowhere\";\n};\n"), NULL, 0, err, sizeof err);
    assert_contains(err, ":2: setting 'admin.listen'");
    const char *bad_main[] = {"server.listen=\"localhost:8080\""};
    load_fail(NULL, bad_main, 1, err, sizeof err);
    assert_contains(err, "setting 'server.listen'");

    /* the address of server.listen, or one that covers it or it covers */
    static const char *const clash[][2] = {
        {"127.0.0.1:8080", "127.0.0.1:8080"}, {"127.0.0.1:8080", "0.0.0.0:8080"},
        {"0.0.0.0:8080", "127.0.0.1:8080"},   {"127.0.0.1:8080", "[::]:8080"},
        {"[::1]:8080", "[::]:8080"},          {"[::1]:8080", "[0:0::1]:8080"}};
    for (size_t i = 0; i < sizeof clash / sizeof clash[0]; i++) {
        assert_true(load_listen(clash[i][0], clash[i][1], err, sizeof err) < 0);
        assert_contains(err, "setting 'admin.listen'");
        assert_contains(err, "server.listen");
    }
}

/* A reload names admin.listen as needing a restart and keeps the old value. */
static void test_reload_admin_listen_needs_restart(void **state)
{
    (void)state;
    struct settings cur, next;
    const char *before[] = {"admin.listen=\"127.0.0.1:9090\""};
    const char *after[] = {"admin.listen=\"127.0.0.1:9091\"", "admin.token=\"t\""};
    load_ok(NULL, before, 1, &cur);
    load_ok(NULL, after, 2, &next);
    char applied[256], restart[256];
    assert_int_equal(
        config_apply_live(&cur, &next, applied, sizeof applied, restart, sizeof restart), 1);
    assert_string_equal(applied, "admin.token");
    assert_string_equal(restart, "admin.listen");
    assert_string_equal(cur.admin_listen, "127.0.0.1:9090");
    config_free(&cur);
    config_free(&next);
}

static void test_range_limits_inclusive(void **state)
{
    (void)state;
    struct settings s;
    const char *ov[] = {"http.max_head_size=512", "http.max_body_size=0", "storage.readers=64",
                        "ws.max_outbuf=4294967296L"};
    load_ok(NULL, ov, 4, &s);
    assert_int_equal(s.http_max_head, 512);
    assert_int_equal(s.http_max_body, 0);
    assert_int_equal(s.storage_readers, 64);
    assert_true(s.ws_max_outbuf == 4294967296LL);
    config_free(&s);
}

static void test_err_too_many_origins(void **state)
{
    (void)state;
    char buf[2048] = "http = { allowed_origins = [";
    for (int i = 0; i <= CONFIG_MAX_ORIGINS; i++) {
        char one[32];
        snprintf(one, sizeof one, "%s\"o%d\"", i ? ", " : "", i);
        strcat(buf, one);
    }
    strcat(buf, "]; };\n");
    char err[512];
    load_fail(write_conf(buf), NULL, 0, err, sizeof err);
    assert_contains(err, "http.allowed_origins");
}

static void test_err_plugin_without_name(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("plugins = (\n  { backend = \"sqlite\"; }\n);\n"), NULL, 0, err,
              sizeof err);
    assert_contains(err, "plugins");
    /* An empty name counts as none. */
    load_fail(write_conf("plugins = ( { name = \"\"; } );\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "plugins");
    /* So does a name that is not a string. */
    load_fail(write_conf("plugins = ( { name = 3; } );\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "plugins");
}

static void test_err_plugins_not_a_list(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("plugins = { name = \"auth\"; };\n"), NULL, 0, err, sizeof err);
    assert_contains(err, "plugins");
}

static void test_err_duplicate_plugin(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("plugins = (\n  { name = \"auth\"; },\n  { name = \"auth\"; }\n);\n"),
              NULL, 0, err, sizeof err);
    assert_contains(err, "auth");
}

/* A plugin entry JSON cannot carry (found by fuzzing: it crashed the loader). */
static void test_err_plugin_not_utf8(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("plugins = ( { name = \"a\x84\"; }, { name = \"b\"; } );\n"), NULL, 0, err,
              sizeof err);
    assert_non_null(strstr(err, "'plugins.[0].name': not valid UTF-8"));
    load_fail(write_conf("plugins = ( { name = \"x\"; note = \"\x84\"; } );\n"), NULL, 0, err,
              sizeof err);
    assert_non_null(strstr(err, "not valid UTF-8"));
}

static void test_err_plugin_path_type(void **state)
{
    (void)state;
    char err[512];
    load_fail(write_conf("plugins = ( { name = \"auth\"; path = 5; } );\n"), NULL, 0, err,
              sizeof err);
    assert_contains(err, "path");
}

static void test_err_override_missing_plugin(void **state)
{
    (void)state;
    char err[512];
    const char *ov[] = {"plugins.nosuch.x=1"};
    load_fail(write_conf("plugins = ( { name = \"auth\"; } );\n"), ov, 1, err, sizeof err);
    assert_contains(err, "plugins.nosuch");
    /* With no plugins list at all. */
    load_fail(NULL, ov, 1, err, sizeof err);
}

/* mariadb.replicas and redis.sentinels: lists of "host:port". */
static void test_address_lists(void **state)
{
    (void)state;
    struct settings s;
    const char *ok[] = {"mariadb.replicas=[\"db2:3306\", \"[::1]:3307\"]",
                        "redis.sentinels=[\"10.0.0.1:26379\"]", "redis.master_name=\"m\""};
    load_ok(NULL, ok, 3, &s);
    assert_string_equal(s.mariadb_replicas[1], "[::1]:3307");
    assert_null(s.mariadb_replicas[2]);
    assert_string_equal(s.redis_sentinels[0], "10.0.0.1:26379");
    assert_string_equal(s.redis_master_name, "m");
    assert_int_equal(s.mariadb_max_replica_lag_ms, 1000);
    config_free(&s);
    char host[64];
    int port = 0;
    assert_int_equal(config_host_port("[::1]:3307", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 3307);
    const char *bad[] = {"db2", "db2:", ":3306", "db2:0", "db2:65536", "db2:33x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char ov[64], err[512];
        snprintf(ov, sizeof ov, "mariadb.replicas=[\"%s\"]", bad[i]);
        const char *o[] = {ov};
        load_fail(NULL, o, 1, err, sizeof err);
        assert_contains(err, "setting 'mariadb.replicas'");
        assert_contains(err, "is not \"host:port\"");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_defaults, teardown),
        cmocka_unit_test_teardown(test_empty_file_gives_defaults, teardown),
        cmocka_unit_test_teardown(test_values_from_file, teardown),
        cmocka_unit_test_teardown(test_overrides, teardown),
        cmocka_unit_test_teardown(test_overrides_win_over_file, teardown),
        cmocka_unit_test_teardown(test_later_override_wins, teardown),
        cmocka_unit_test_teardown(test_plugin_override_by_name, teardown),
        cmocka_unit_test_teardown(test_plugin_override_by_index, teardown),
        cmocka_unit_test_teardown(test_err_missing_file, teardown),
        cmocka_unit_test_teardown(test_err_syntax, teardown),
        cmocka_unit_test_teardown(test_err_plugin_not_utf8, teardown),
        cmocka_unit_test_teardown(test_err_unknown_setting, teardown),
        cmocka_unit_test_teardown(test_err_unknown_top_level, teardown),
        cmocka_unit_test_teardown(test_err_unknown_group, teardown),
        cmocka_unit_test_teardown(test_err_unknown_override, teardown),
        cmocka_unit_test_teardown(test_err_malformed_override, teardown),
        cmocka_unit_test_teardown(test_err_wrong_type, teardown),
        cmocka_unit_test_teardown(test_err_out_of_range, teardown),
        cmocka_unit_test_teardown(test_range_limits_inclusive, teardown),
        cmocka_unit_test_teardown(test_integers_are_64_bits, teardown),
        cmocka_unit_test_teardown(test_err_choice, teardown),
        cmocka_unit_test_teardown(test_err_settings_together, teardown),
        cmocka_unit_test_teardown(test_listen_addresses, teardown),
        cmocka_unit_test_teardown(test_reload_admin_listen_needs_restart, teardown),
        cmocka_unit_test_teardown(test_err_too_many_origins, teardown),
        cmocka_unit_test_teardown(test_err_plugin_without_name, teardown),
        cmocka_unit_test_teardown(test_err_plugins_not_a_list, teardown),
        cmocka_unit_test_teardown(test_err_duplicate_plugin, teardown),
        cmocka_unit_test_teardown(test_err_plugin_path_type, teardown),
        cmocka_unit_test_teardown(test_err_override_missing_plugin, teardown),
        cmocka_unit_test_teardown(test_address_lists, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
