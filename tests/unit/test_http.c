/* Unit tests for the pure helpers of core/http.h: query-string lookup and
 * the mapping of error codes to wire names and HTTP statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "http.h"

/* Look key up with a roomy buffer; the result is either NULL or buf. */
static const char *q(const char *query, const char *key)
{
    static char buf[256];
    memset(buf, '#', sizeof buf);
    const char *r = http_query_get(query, key, buf, sizeof buf);
    if (r)
        assert_ptr_equal(r, buf);
    return r;
}

static void test_query_finds_keys(void **state)
{
    (void)state;
    const char *query = "a=1&bb=two&ccc=three";
    assert_string_equal(q(query, "a"), "1");
    assert_string_equal(q(query, "bb"), "two");
    assert_string_equal(q(query, "ccc"), "three");
    assert_string_equal(q("only=x", "only"), "x");
    assert_string_equal(q("k=", "k"), "");
    assert_string_equal(q("x=1&k=&y=2", "k"), "");
    assert_string_equal(q("k=a=b", "k"), "a=b");
}

static void test_query_absent(void **state)
{
    (void)state;
    assert_null(q("a=1&b=2", "c"));
    assert_null(q("a=1&b=2", "A"));
    assert_null(q("", "a"));
    assert_null(q(NULL, "a"));
    assert_null(q("a=1&b=2", "1")); /* values are not keys */
    assert_null(q("xa=1", "a"));    /* a suffix is not the key */
}

static void test_query_prefix_is_not_key(void **state)
{
    (void)state;
    assert_null(q("access_token=abc", "access"));
    assert_null(q("access_token=abc", "access_"));
    assert_null(q("accessX=1&access_token=abc", "access"));
    assert_string_equal(q("access_token=abc&access=x", "access"), "x");
    assert_string_equal(q("access=x&access_token=abc", "access_token"), "abc");
    assert_null(q("access=x", "access_token"));
}

static void test_query_decodes(void **state)
{
    (void)state;
    assert_string_equal(q("k=%41", "k"), "A");
    assert_string_equal(q("k=%41%42c", "k"), "ABc");
    assert_string_equal(q("k=hello+world", "k"), "hello world");
    assert_string_equal(q("k=%2B", "k"), "+");
    assert_string_equal(q("k=%26%3D", "k"), "&=");
    assert_string_equal(q("k=%e2%82%AC", "k"), "\xe2\x82\xac"); /* either hex case */
    assert_string_equal(q("a=1&token=a%2Fb%3Fc&z=9", "token"), "a/b?c");
    assert_string_equal(q("k=100%25", "k"), "100%");
}

static void test_query_malformed(void **state)
{
    (void)state;
    assert_null(q("k=%4", "k"));
    assert_null(q("k=%", "k"));
    assert_null(q("k=%zz", "k"));
    assert_null(q("k=%4g", "k"));
    assert_null(q("k=%g4", "k"));
    assert_null(q("k=ab%4&x=1", "k")); /* the escape is cut short by '&' */
    assert_null(q("k=%00", "k"));
    assert_null(q("k=a%00b", "k"));
    /* A malformed value does not spoil other keys. */
    assert_string_equal(q("k=%zz&ok=1", "ok"), "1");
}

static void test_query_buffer_size(void **state)
{
    (void)state;
    char buf[16];
    memset(buf, '#', sizeof buf);
    /* "abcdef" needs 7 bytes with its NUL. */
    assert_ptr_equal(http_query_get("k=abcdef", "k", buf, 7), buf);
    assert_string_equal(buf, "abcdef");
    assert_null(http_query_get("k=abcdef", "k", buf, 6));
    assert_null(http_query_get("k=abcdef", "k", buf, 1));
    assert_null(http_query_get("k=abcdef", "k", buf, 0));
    assert_ptr_equal(http_query_get("k=", "k", buf, 1), buf);
    assert_string_equal(buf, "");
    /* Whatever is rejected, nothing is written past len. */
    memset(buf, '#', sizeof buf);
    assert_null(http_query_get("k=0123456789abcdef", "k", buf, 8));
    for (size_t i = 8; i < sizeof buf; i++)
        assert_int_equal(buf[i], '#');
}

static void test_error_codes(void **state)
{
    (void)state;
    static const struct {
        chatd_error_code code;
        const char *name;
        int status;
    } table[] = {
        {CHATD_ERR_BAD_REQUEST, "BAD_REQUEST", 400},
        {CHATD_ERR_UNAUTHORIZED, "UNAUTHORIZED", 401},
        {CHATD_ERR_FORBIDDEN, "FORBIDDEN", 403},
        {CHATD_ERR_NOT_FOUND, "NOT_FOUND", 404},
        {CHATD_ERR_CONFLICT, "CONFLICT", 409},
        {CHATD_ERR_LIMIT_EXCEEDED, "LIMIT_EXCEEDED", 413},
        {CHATD_ERR_RATE_LIMITED, "RATE_LIMITED", 429},
        {CHATD_ERR_UNAVAILABLE, "UNAVAILABLE", 503},
        {CHATD_ERR_INTERNAL, "INTERNAL", 500},
    };
    size_t n = sizeof table / sizeof table[0];
    /* The table covers every code of the enum. */
    assert_int_equal(n, CHATD_ERR_INTERNAL - CHATD_ERR_BAD_REQUEST + 1);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(error_code_name(table[i].code));
        assert_string_equal(error_code_name(table[i].code), table[i].name);
        assert_int_equal(error_http_status(table[i].code), table[i].status);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_finds_keys),
        cmocka_unit_test(test_query_absent),
        cmocka_unit_test(test_query_prefix_is_not_key),
        cmocka_unit_test(test_query_decodes),
        cmocka_unit_test(test_query_malformed),
        cmocka_unit_test(test_query_buffer_size),
        cmocka_unit_test(test_error_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
