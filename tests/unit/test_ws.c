/* Unit tests for the pure parts of core/ws.h: UTF-8 validation, the
 * handshake accept key, and server text frame encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"
#include "ws.h"

/* Validate exactly len bytes held in a buffer of exactly that size, so that
 * reading past the end is caught by AddressSanitizer. */
static int valid_n(const void *bytes, size_t len)
{
    unsigned char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, len);
    int r = utf8_valid(copy, len);
    free(copy);
    return r;
}

#define VALID(lit) valid_n((lit), sizeof(lit) - 1)

static void test_utf8_valid_inputs(void **state)
{
    (void)state;
    assert_true(valid_n("", 0));
    assert_true(VALID("hello, world"));
    assert_true(VALID("\x01\x7f"));
    assert_true(VALID("a\0b"));             /* NUL is a valid code point */
    assert_true(VALID("\xc2\x80"));         /* U+0080, smallest 2-byte */
    assert_true(VALID("caf\xc3\xa9"));      /* é */
    assert_true(VALID("\xdf\xbf"));         /* U+07FF, largest 2-byte */
    assert_true(VALID("\xe0\xa0\x80"));     /* U+0800, smallest 3-byte */
    assert_true(VALID("\xe2\x82\xac"));     /* € */
    assert_true(VALID("\xed\x9f\xbf"));     /* U+D7FF, just below the surrogates */
    assert_true(VALID("\xee\x80\x80"));     /* U+E000, just above them */
    assert_true(VALID("\xef\xbf\xbf"));     /* U+FFFF */
    assert_true(VALID("\xf0\x90\x80\x80")); /* U+10000, smallest 4-byte */
    assert_true(VALID("\xf0\x9f\x98\x80")); /* 😀 */
    assert_true(VALID("\xf4\x8f\xbf\xbf")); /* U+10FFFF, the last code point */
    assert_true(VALID("x\xc3\xa9y\xe2\x82\xacz\xf0\x9f\x98\x80!"));
}

static void test_utf8_invalid_inputs(void **state)
{
    (void)state;
    /* Lone continuation bytes. */
    assert_false(VALID("\x80"));
    assert_false(VALID("\xbf"));
    assert_false(VALID("ab\x80"));
    assert_false(VALID("\xc3\xa9\xa9")); /* one continuation too many */
    /* Lead byte followed by a non-continuation. */
    assert_false(VALID("\xc3\x41"));
    assert_false(VALID("\xe2\x82\x41"));
    assert_false(VALID("\xf0\x9f\x98\x41"));
    assert_false(VALID("\xe2\xc3\xa9"));
    /* Overlong encodings. */
    assert_false(VALID("\xc0\x80"));
    assert_false(VALID("\xc1\xbf"));
    assert_false(VALID("\xe0\x80\x80"));
    assert_false(VALID("\xe0\x9f\xbf")); /* U+07FF in 3 bytes */
    assert_false(VALID("\xf0\x80\x80\x80"));
    assert_false(VALID("\xf0\x8f\xbf\xbf")); /* U+FFFF in 4 bytes */
    /* UTF-16 surrogates. */
    assert_false(VALID("\xed\xa0\x80"));             /* U+D800 */
    assert_false(VALID("\xed\xbf\xbf"));             /* U+DFFF */
    assert_false(VALID("\xed\xa0\xbd\xed\xb8\x80")); /* a CESU-8 pair */
    /* Beyond U+10FFFF. */
    assert_false(VALID("\xf4\x90\x80\x80"));
    assert_false(VALID("\xf7\xbf\xbf\xbf"));
    /* Bytes that never appear in UTF-8. */
    for (unsigned b = 0xf5; b <= 0xff; b++) {
        unsigned char s[4] = {(unsigned char)b, 0x80, 0x80, 0x80};
        assert_false(valid_n(s, 1));
        assert_false(valid_n(s, 4));
    }
}

static void test_utf8_truncated(void **state)
{
    (void)state;
    assert_false(VALID("\xc3"));
    assert_false(VALID("abc\xc3"));
    assert_false(VALID("\xe2"));
    assert_false(VALID("\xe2\x82"));
    assert_false(VALID("abc\xe2\x82"));
    assert_false(VALID("\xf0"));
    assert_false(VALID("\xf0\x9f"));
    assert_false(VALID("\xf0\x9f\x98"));
    assert_false(VALID("ok\xf0\x9f\x98"));
    /* Only len bytes count, whatever follows in memory. */
    const unsigned char euro[] = {'a', 0xe2, 0x82, 0xac};
    assert_true(utf8_valid(euro, 4));
    assert_false(utf8_valid(euro, 3));
    assert_false(utf8_valid(euro, 2));
    assert_true(utf8_valid(euro, 1));
}

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    memset(out, 'Z', sizeof out);
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out); /* RFC 6455, section 1.3 */
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(strlen(out), 28);

    memset(out, 'Z', sizeof out);
    ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", out);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static char *pattern(size_t len)
{
    char *t = malloc(len ? len : 1);
    assert_non_null(t);
    for (size_t i = 0; i < len; i++)
        t[i] = (char)('a' + i % 26);
    return t;
}

/* Check the frame of a len-byte message: header bytes as given, payload after. */
static void check_frame(size_t len, const unsigned char *want_hdr, size_t hdr)
{
    char *text = pattern(len);
    struct wsmsg *m = wsmsg_new(text, len);
    assert_non_null(m);
    assert_int_equal(m->refs, 1);
    assert_int_equal(m->hdr, hdr);
    assert_int_equal(m->len, hdr + len);
    assert_memory_equal(m->data, want_hdr, hdr);
    if (len)
        assert_memory_equal(m->data + hdr, text, len);
    free(text); /* the message holds its own copy */
    if (len)
        assert_int_equal(m->data[hdr + len - 1], 'a' + (len - 1) % 26);
    wsmsg_unref(m);
}

static void test_frame_short(void **state)
{
    (void)state;
    check_frame(0, (const unsigned char[]){0x81, 0x00}, 2);
    check_frame(5, (const unsigned char[]){0x81, 0x05}, 2);
    check_frame(125, (const unsigned char[]){0x81, 125}, 2);
}

static void test_frame_medium(void **state)
{
    (void)state;
    check_frame(126, (const unsigned char[]){0x81, 126, 0x00, 126}, 4);
    check_frame(200, (const unsigned char[]){0x81, 126, 0x00, 0xc8}, 4);
    check_frame(4660, (const unsigned char[]){0x81, 126, 0x12, 0x34}, 4);
    check_frame(65535, (const unsigned char[]){0x81, 126, 0xff, 0xff}, 4);
}

static void test_frame_long(void **state)
{
    (void)state;
    check_frame(65536, (const unsigned char[]){0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}, 10);
    /* 70000 = 0x11170 */
    check_frame(70000, (const unsigned char[]){0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70}, 10);
    /* 0x01020304 bytes: every length byte distinct. */
    check_frame(0x01020304, (const unsigned char[]){0x81, 127, 0, 0, 0, 0, 0x01, 0x02, 0x03, 0x04},
                10);
}

static void test_frame_copies_text(void **state)
{
    (void)state;
    char text[] = "{\"type\":\"hello\"}";
    struct wsmsg *m = wsmsg_new(text, strlen(text));
    assert_non_null(m);
    memset(text, 'X', strlen(text));
    assert_memory_equal(m->data + m->hdr, "{\"type\":\"hello\"}", 16);
    wsmsg_unref(m);
}

static void test_refcount(void **state)
{
    (void)state;
    struct wsmsg *m = wsmsg_new("shared", 6);
    assert_non_null(m);
    assert_int_equal(m->refs, 1);
    /* Two more holders take a reference each, then all three let go; a
     * missing or extra free is reported by the sanitizers. */
    m->refs += 2;
    wsmsg_unref(m);
    assert_int_equal(m->refs, 2);
    assert_memory_equal(m->data + m->hdr, "shared", 6);
    wsmsg_unref(m);
    assert_int_equal(m->refs, 1);
    wsmsg_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_inputs), cmocka_unit_test(test_utf8_invalid_inputs),
        cmocka_unit_test(test_utf8_truncated),    cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_frame_short),       cmocka_unit_test(test_frame_medium),
        cmocka_unit_test(test_frame_long),        cmocka_unit_test(test_frame_copies_text),
        cmocka_unit_test(test_refcount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
