/* Unit tests for core/json_scan.h: what a text jansson refused is, and the
 * request's type and requestId read out of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "json_scan.h"

static struct json_fault scan(const char *text)
{
    struct json_fault f;
    json_scan_fault(text, strlen(text), &f);
    return f;
}

static void test_values_jansson_cannot_hold(void **state)
{
    (void)state;
    static const struct {
        const char *text, *where, *why_part;
    } cases[] = {
        {"{\"type\":\"W\",\"content\":\"\\ud83d\"}", "content", "lone surrogate"},
        {"{\"type\":\"W\",\"content\":\"a\\udc00\"}", "content", "lone surrogate"},
        {"{\"type\":\"W\",\"content\":\"\\ud83dx\"}", "content", "lone surrogate"},
        {"{\"type\":\"W\",\"content\":\"a\\u0000\"}", "content", "U+0000"},
        {"{\"type\":\"W\",\"n\":99999999999999999999}", "n", "64 bits"},
        {"{\"type\":\"W\",\"n\":-9223372036854775809}", "n", "64 bits"},
        {"{\"type\":\"W\",\"n\":1e309}", "n", "64-bit float"},
        {"{\"type\":\"W\",\"a\":{\"b\":[0,[\"\\udfff\"]]}}", "a.b[1][0]", "lone surrogate"},
        {"[1,\"\\ud800\"]", "[1]", "lone surrogate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct json_fault f = scan(cases[i].text);
        assert_true(f.is_json);
        assert_non_null(f.why);
        assert_non_null(strstr(f.why, cases[i].why_part));
        assert_string_equal(f.where, cases[i].where);
    }
}

static void test_fine_values_are_no_fault(void **state)
{
    (void)state;
    /* a surrogate pair, the largest integers, tiny reals, every escape */
    struct json_fault f =
        scan("{\"a\":\"\\ud83d\\ude00\",\"b\":9223372036854775807,"
             "\"c\":-9223372036854775808,\"d\":1e-400,"
             "\"e\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\",\"f\":[true,false,null]}");
    assert_true(f.is_json);
    assert_null(f.why);
}

static void test_type_and_request_id_are_read(void **state)
{
    (void)state;
    struct json_fault f = scan("{\"content\":\"\\ud83d\",\"requestId\":\"r\\u00e9\","
                               "\"type\":\"WRITE_MESSAGE\"}");
    assert_true(f.has_type && f.has_request_id);
    assert_string_equal(f.type, "WRITE_MESSAGE");
    assert_string_equal(f.request_id, "r\xc3\xa9");
    /* nested ones are not the request's */
    f = scan("{\"x\":{\"type\":\"T\",\"requestId\":\"n\"},\"y\":1e999}");
    assert_false(f.has_type || f.has_request_id);
    /* too long, or holding a fault itself: not read */
    char big[200];
    snprintf(big, sizeof big, "{\"requestId\":\"%065d\",\"type\":\"\\ud800\"}", 0);
    f = scan(big);
    assert_false(f.has_request_id || f.has_type);
    assert_string_equal(f.where, "type");
}

static void test_text_that_is_not_json(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",          "{",       "{\"a\":}", "{\"a\" 1}", "[1,]",  "{\"a\":1,}",  "\"unterminated",
        "tru",       "01",      "1.",       "-",         "{a:1}", "{\"a\":1} x", "\"\\x\"",
        "\"\\u12\"", "\"a\tb\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct json_fault f = scan(bad[i]);
        assert_false(f.is_json);
        assert_non_null(f.why);
    }
    /* what came before the error is still read */
    struct json_fault f = scan("{\"type\":\"X\",\"requestId\":\"m\",\"a\":}");
    assert_false(f.is_json);
    assert_true(f.has_type && f.has_request_id);
    assert_string_equal(f.request_id, "m");
    json_scan_fault(NULL, 0, &f); /* an empty message */
    assert_false(f.is_json);
}

static void test_depth_is_bounded(void **state)
{
    (void)state;
    enum { N = 5000 };
    static char deep[2 * N + 1];
    memset(deep, '[', N);
    memset(deep + N, ']', N);
    struct json_fault f;
    json_scan_fault(deep, 2 * N, &f);
    assert_false(f.is_json);
    assert_string_equal(f.why, "nested too deeply");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_jansson_cannot_hold),
        cmocka_unit_test(test_fine_values_are_no_fault),
        cmocka_unit_test(test_type_and_request_id_are_read),
        cmocka_unit_test(test_text_that_is_not_json),
        cmocka_unit_test(test_depth_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
