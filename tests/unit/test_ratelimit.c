/* Unit tests for plugins/auth/ratelimit.h: failure counting in fixed windows.
 * Time is passed explicitly, so nothing sleeps. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "host.h"
#include "ratelimit.h"

/* The core's host table: its maps are what the limiter keeps keys in. */
#define H host_table("", NULL)

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

#ifdef HAVE_ASAN
/* From the sanitizer runtime's allocator interface (its header is not
 * installed by every compiler). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* Bytes currently allocated on the heap by the whole process. */
static size_t heap_in_use(void)
{
#ifdef HAVE_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

/* A clock far from zero, as a monotonic clock in milliseconds would be. */
#define T0 1700000000000LL

static void test_not_blocked_before_max(void **state)
{
    (void)state;
    struct ratelimit *r = ratelimit_new(H, 3, 1000);
    assert_non_null(r);
    assert_false(ratelimit_blocked(r, "alice", T0));
    ratelimit_fail(r, "alice", T0);
    assert_false(ratelimit_blocked(r, "alice", T0));
    ratelimit_fail(r, "alice", T0 + 10);
    assert_false(ratelimit_blocked(r, "alice", T0 + 10));
    ratelimit_free(r);
}

static void test_blocked_at_max(void **state)
{
    (void)state;
    struct ratelimit *r = ratelimit_new(H, 3, 1000);
    assert_non_null(r);
    ratelimit_fail(r, "alice", T0);
    ratelimit_fail(r, "alice", T0 + 100);
    ratelimit_fail(r, "alice", T0 + 200);
    assert_true(ratelimit_blocked(r, "alice", T0 + 200));
    assert_true(ratelimit_blocked(r, "alice", T0 + 999));
    /* More failures keep it blocked. */
    ratelimit_fail(r, "alice", T0 + 300);
    assert_true(ratelimit_blocked(r, "alice", T0 + 300));
    ratelimit_free(r);
}

static void test_max_one(void **state)
{
    (void)state;
    struct ratelimit *r = ratelimit_new(H, 1, 50);
    assert_non_null(r);
    assert_false(ratelimit_blocked(r, "k", T0));
    ratelimit_fail(r, "k", T0);
    assert_true(ratelimit_blocked(r, "k", T0));
    assert_true(ratelimit_blocked(r, "k", T0 + 49));
    assert_false(ratelimit_blocked(r, "k", T0 + 51));
    ratelimit_free(r);
}

static void test_other_keys_unaffected(void **state)
{
    (void)state;
    struct ratelimit *r = ratelimit_new(H, 2, 1000);
    assert_non_null(r);
    ratelimit_fail(r, "alice", T0);
    ratelimit_fail(r, "alice", T0);
    assert_true(ratelimit_blocked(r, "alice", T0 + 1));
    assert_false(ratelimit_blocked(r, "bob", T0 + 1));
    assert_false(ratelimit_blocked(r, "alic", T0 + 1));
    assert_false(ratelimit_blocked(r, "alice2", T0 + 1));
    assert_false(ratelimit_blocked(r, "", T0 + 1));
    /* bob's failures are his own. */
    ratelimit_fail(r, "bob", T0 + 2);
    assert_false(ratelimit_blocked(r, "bob", T0 + 2));
    assert_true(ratelimit_blocked(r, "alice", T0 + 2));
    ratelimit_fail(r, "bob", T0 + 3);
    assert_true(ratelimit_blocked(r, "bob", T0 + 3));
    ratelimit_free(r);
}

static void test_window_expires(void **state)
{
    (void)state;
    struct ratelimit *r = ratelimit_new(H, 3, 1000);
    assert_non_null(r);
    for (int i = 0; i < 3; i++)
        ratelimit_fail(r, "alice", T0 + i);
    assert_true(ratelimit_blocked(r, "alice", T0 + 500));
    assert_true(ratelimit_blocked(r, "alice", T0 + 998));
    /* The window opened at the first failure; once it is over the key is free. */
    assert_false(ratelimit_blocked(r, "alice", T0 + 1001));
    assert_false(ratelimit_blocked(r, "alice", T0 + 50000));

    /* Counting starts over in a new window. */
    ratelimit_fail(r, "alice", T0 + 2000);
    assert_false(ratelimit_blocked(r, "alice", T0 + 2000));
    ratelimit_fail(r, "alice", T0 + 2001);
    assert_false(ratelimit_blocked(r, "alice", T0 + 2001));
    ratelimit_fail(r, "alice", T0 + 2002);
    assert_true(ratelimit_blocked(r, "alice", T0 + 2002));
    assert_false(ratelimit_blocked(r, "alice", T0 + 3001));
    ratelimit_free(r);
}

static void test_failures_spread_over_windows(void **state)
{
    (void)state;
    /* Failures that never reach max within one window never block. */
    struct ratelimit *r = ratelimit_new(H, 3, 1000);
    assert_non_null(r);
    for (int64_t t = T0; t < T0 + 20000; t += 600) {
        ratelimit_fail(r, "slow", t);
        assert_false(ratelimit_blocked(r, "slow", t));
    }
    ratelimit_free(r);
}

static void test_reset(void **state)
{
    (void)state;
    struct ratelimit *r = ratelimit_new(H, 2, 1000);
    assert_non_null(r);
    ratelimit_fail(r, "alice", T0);
    ratelimit_fail(r, "alice", T0);
    ratelimit_fail(r, "bob", T0);
    ratelimit_fail(r, "bob", T0);
    assert_true(ratelimit_blocked(r, "alice", T0));
    ratelimit_reset(r, "alice");
    assert_false(ratelimit_blocked(r, "alice", T0));
    /* Only alice was forgotten. */
    assert_true(ratelimit_blocked(r, "bob", T0));
    /* alice starts from zero again. */
    ratelimit_fail(r, "alice", T0 + 1);
    assert_false(ratelimit_blocked(r, "alice", T0 + 1));
    ratelimit_fail(r, "alice", T0 + 2);
    assert_true(ratelimit_blocked(r, "alice", T0 + 2));
    /* Resetting an unknown key, or twice, is harmless. */
    ratelimit_reset(r, "nobody");
    ratelimit_reset(r, "bob");
    ratelimit_reset(r, "bob");
    assert_false(ratelimit_blocked(r, "bob", T0 + 2));
    ratelimit_free(r);
}

static void test_free_with_entries(void **state)
{
    (void)state;
    struct ratelimit *r = ratelimit_new(H, 5, 1000);
    assert_non_null(r);
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "10.0.0.%d", i);
        ratelimit_fail(r, key, T0 + i);
    }
    ratelimit_free(r); /* the sanitizer reports anything left behind */
    ratelimit_free(NULL);
}

static void test_clock_starting_at_zero(void **state)
{
    (void)state;
    struct ratelimit *r = ratelimit_new(H, 2, 100);
    assert_non_null(r);
    ratelimit_fail(r, "k", 0);
    ratelimit_fail(r, "k", 1);
    assert_true(ratelimit_blocked(r, "k", 1));
    assert_false(ratelimit_blocked(r, "k", 101));
    ratelimit_free(r);
}

/*
 * Many distinct keys, each failing once, over many windows. Without
 * sweeping, every key would stay in memory forever; with it, the heap in use
 * settles at what about two windows' worth of keys need.
 */
static void test_memory_bounded(void **state)
{
    (void)state;
    enum { PER_WINDOW = 2000, WINDOWS = 60 };
    const int64_t window = 1000;
    char key[48];
    struct ratelimit *r = ratelimit_new(H, 1, window);
    assert_non_null(r);

    size_t baseline = 0;
    for (int w = 0; w < WINDOWS; w++) {
        int64_t start = T0 + w * window;
        for (int i = 0; i < PER_WINDOW; i++) {
            snprintf(key, sizeof key, "user-%d-%d", w, i);
            /* Spread the failures over the window. */
            int64_t t = start + (int64_t)i * window / PER_WINDOW;
            ratelimit_fail(r, key, t);
            assert_true(ratelimit_blocked(r, key, t));
        }
        if (w == 4)
            baseline = heap_in_use();
    }
    size_t after = heap_in_use();
    /* 56 more windows of 2000 new keys would add megabytes if kept. */
    if (after > baseline + baseline / 2 + 64 * 1024)
        fail_msg("heap grew from %zu to %zu bytes over %d windows", baseline, after, WINDOWS - 5);

    /* Keys of old windows are gone or at least no longer blocked. */
    int64_t now = T0 + WINDOWS * window;
    for (int w = 0; w < WINDOWS - 2; w++)
        for (int i = 0; i < PER_WINDOW; i += 97) {
            snprintf(key, sizeof key, "user-%d-%d", w, i);
            assert_false(ratelimit_blocked(r, key, now));
        }
    /* A key of an old window that fails again counts from one (max is 1, so
     * one failure blocks it again, but only for a window). */
    ratelimit_fail(r, "user-0-0", now);
    assert_true(ratelimit_blocked(r, "user-0-0", now));
    assert_false(ratelimit_blocked(r, "user-0-0", now + window + 1));
    ratelimit_free(r);
}

/* A sweep drops only windows that are over, not those still running. */
static void test_sweep_keeps_active_keys(void **state)
{
    (void)state;
    const int64_t window = 1000;
    struct ratelimit *r = ratelimit_new(H, 3, window);
    assert_non_null(r);
    ratelimit_fail(r, "old", T0);
    ratelimit_fail(r, "old", T0 + 1);
    ratelimit_fail(r, "old", T0 + 2);
    /* "hot" reaches max in the middle of the first window. */
    ratelimit_fail(r, "hot", T0 + 500);
    ratelimit_fail(r, "hot", T0 + 600);
    ratelimit_fail(r, "hot", T0 + 700);
    assert_true(ratelimit_blocked(r, "hot", T0 + 700));
    /* A failure a whole window later gives the limiter a chance to sweep:
     * "old" has ended, "hot" has 500 ms to go. */
    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "other-%d", i);
        ratelimit_fail(r, key, T0 + 1100 + i);
    }
    assert_true(ratelimit_blocked(r, "hot", T0 + 1150));
    assert_true(ratelimit_blocked(r, "hot", T0 + 1499));
    assert_false(ratelimit_blocked(r, "old", T0 + 1150));
    /* "old" starts over with one failure. */
    ratelimit_fail(r, "old", T0 + 1200);
    assert_false(ratelimit_blocked(r, "old", T0 + 1200));
    /* And "hot" is free once its own window is over. */
    assert_false(ratelimit_blocked(r, "hot", T0 + 1501));
    ratelimit_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_blocked_before_max),
        cmocka_unit_test(test_blocked_at_max),
        cmocka_unit_test(test_max_one),
        cmocka_unit_test(test_other_keys_unaffected),
        cmocka_unit_test(test_window_expires),
        cmocka_unit_test(test_failures_spread_over_windows),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_free_with_entries),
        cmocka_unit_test(test_clock_starting_at_zero),
        cmocka_unit_test(test_memory_bounded),
        cmocka_unit_test(test_sweep_keeps_active_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
