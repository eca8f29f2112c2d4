/* Unit tests for core/base/metrics.h: the exposition in Prometheus
 * conventions (each family once, with # HELP and # TYPE before its series),
 * labelled counters with escaped values and a bounded number of series, help
 * texts from the table or naming a plugin, and the commit batch histogram. */
#include <event2/buffer.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static char *render(void)
{
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    metrics_render(b);
    size_t n = evbuffer_get_length(b);
    char *text = malloc(n + 1);
    assert_non_null(text);
    evbuffer_remove(b, text, n);
    text[n] = '\0';
    evbuffer_free(b);
    return text;
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_families_have_help_and_type(void **state)
{
    (void)state;
    metrics_count("http_requests", 2);
    metrics_gauge("connections", 5);
    metrics_observe_us("ws_request", 300);
    int64_t *a = metrics_counter_label_ref("ws_messages_in", "type", "A_REQUEST");
    int64_t *b = metrics_counter_label_ref("ws_messages_in", "type", "B \"odd\" \\ type\n");
    assert_ptr_equal(a, metrics_counter_label_ref("ws_messages_in", "type", "A_REQUEST"));
    *a += 3, *b += 1;
    metrics_plugin_count("probe", "probe_things", 1);
    metrics_plugin_count("auth", "logins", 1);
    metrics_observe_batch(3);
    metrics_observe_batch(100);
    char *t = render();
    assert_non_null(strstr(t, "# HELP chatd_http_requests_total HTTP requests received.\n"
                              "# TYPE chatd_http_requests_total counter\n"
                              "chatd_http_requests_total 2\n"));
    assert_non_null(strstr(t, "# TYPE chatd_connections gauge\nchatd_connections 5\n"));
    assert_non_null(strstr(t, "# TYPE chatd_ws_request_seconds histogram\n"
                              "chatd_ws_request_seconds_bucket{le=\"0.0001\"} 0\n"
                              "chatd_ws_request_seconds_bucket{le=\"0.00025\"} 0\n"
                              "chatd_ws_request_seconds_bucket{le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(t, "chatd_ws_request_seconds_count 1\n"));
    /* one HELP and TYPE for the labelled family, its series after them */
    assert_int_equal(count_of(t, "# TYPE chatd_ws_messages_in_total counter\n"), 1);
    assert_int_equal(count_of(t, "# HELP chatd_ws_messages_in_total "), 1);
    assert_non_null(strstr(t,
                           "# TYPE chatd_ws_messages_in_total counter\n"
                           "chatd_ws_messages_in_total{type=\"A_REQUEST\"} 3\n"
                           "chatd_ws_messages_in_total{type=\"B \\\"odd\\\" \\\\ type\\n\"} 1\n"));
    assert_null(strstr(t, "chatd_ws_messages_in_total 0")); /* no unlabelled series */
    /* a plugin's own name gets a text naming the plugin; a known one its own */
    assert_non_null(strstr(t, "# HELP chatd_probe_things_total Counter probe_things of the plugin "
                              "probe.\n# TYPE chatd_probe_things_total counter\n"));
    assert_non_null(strstr(t, "# HELP chatd_logins_total Successful logins (auth plugin).\n"));
    assert_non_null(strstr(t, "# TYPE chatd_commit_batch_size histogram\n"
                              "chatd_commit_batch_size_bucket{le=\"1\"} 0\n"
                              "chatd_commit_batch_size_bucket{le=\"2\"} 0\n"
                              "chatd_commit_batch_size_bucket{le=\"4\"} 1\n"));
    assert_non_null(strstr(t, "chatd_commit_batch_size_bucket{le=\"128\"} 2\n"));
    assert_non_null(strstr(t, "chatd_commit_batch_size_count 2\n"));
    assert_non_null(strstr(t, "chatd_commit_batch_max 100\n"));
    /* every family's HELP comes right before its TYPE */
    int helps = count_of(t, "# HELP "), types = count_of(t, "# TYPE ");
    assert_int_equal(helps, types);
    for (const char *p = t; (p = strstr(p, "# HELP ")); p++) {
        const char *name = p + 7, *sp = strchr(name, ' '), *nl = strchr(p, '\n');
        assert_non_null(sp);
        assert_non_null(nl);
        assert_int_equal(strncmp(nl + 1, "# TYPE ", 7), 0);
        assert_int_equal(strncmp(nl + 8, name, (size_t)(sp - name)), 0);
    }
    free(t);
}

static void test_series_are_bounded(void **state)
{
    (void)state;
    char value[32];
    int64_t *first = metrics_counter_label_ref("ws_messages_out", "type", "T0");
    for (int i = 1; i < METRICS_MAX_SERIES + 10; i++) {
        snprintf(value, sizeof value, "T%d", i);
        int64_t *c = metrics_counter_label_ref("ws_messages_out", "type", value);
        assert_non_null(c);
        ++*c;
    }
    ++*first;
    char *t = render();
    assert_non_null(strstr(t, "chatd_ws_messages_out_total{type=\"T0\"} 1\n"));
    assert_non_null(strstr(t, "chatd_ws_messages_out_total{type=\"T62\"} 1\n"));
    assert_null(strstr(t, "{type=\"T63\"}"));
    /* the 64th series is "other", and takes every value past it */
    assert_non_null(strstr(t, "chatd_ws_messages_out_total{type=\"other\"} 11\n"));
    free(t);
}

static void test_help_table(void **state)
{
    (void)state;
    /* the table is searched by halves: every name must be found */
    static const char *const names[] = {
        "accept_errors",      "bus_lag",
        "commit_batch_size",  "connections",
        "entered_channels",   "http_errors",
        "job_queue_depth",    "logins",
        "online_users",       "push_sent",
        "redis_commands",     "sessions",
        "store_write",        "typing_dropped",
        "ws_errors",          "ws_messages_in",
        "ws_messages_out",    "ws_slow_reader_closed",
        "redis_failovers",    "redis_sentinel_asks",
        "store_read_replica", "store_reads_replica_waited",
        "store_replicas_fit",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!metrics_help(names[i]))
            fail_msg("no help for %s", names[i]);
    assert_null(metrics_help("no_such_metric"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_have_help_and_type),
        cmocka_unit_test(test_series_are_bounded),
        cmocka_unit_test(test_help_table),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    metrics_free();
    return rc;
}
