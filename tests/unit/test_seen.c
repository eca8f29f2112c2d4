/* Unit tests for core/cluster/seen.h: who Redis lately found entered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "seen.h"

static int teardown(void **state)
{
    (void)state;
    seen_free();
    return 0;
}

static void test_entered_for_keep_ms_then_not(void **state)
{
    (void)state;
    assert_int_equal(seen_init(1024, 2000), 0);
    assert_false(seen_entered(7, 42, 1000));
    seen_note(7, 42, 1, 1000);
    assert_true(seen_entered(7, 42, 1000));
    assert_true(seen_entered(7, 42, 2999));
    assert_false(seen_entered(7, 42, 3000));
    /* another user, another channel: not seen */
    assert_false(seen_entered(7, 43, 1500));
    assert_false(seen_entered(8, 42, 1500));
}

static void test_a_newer_answer_renews_or_forgets(void **state)
{
    (void)state;
    assert_int_equal(seen_init(1024, 2000), 0);
    seen_note(7, 42, 1, 1000);
    seen_note(7, 42, 1, 2500); /* entered again: counted from now */
    assert_true(seen_entered(7, 42, 4000));
    seen_note(7, 42, 0, 4100); /* Redis found the user gone */
    assert_false(seen_entered(7, 42, 4100));
}

static void test_not_entered_forgets_only_its_own_entry(void **state)
{
    (void)state;
    assert_int_equal(seen_init(1, 2000), 0); /* one slot: everything collides */
    seen_note(7, 42, 1, 1000);
    seen_note(9, 5, 0, 1000); /* another pair not entered: leaves 7/42 alone */
    assert_true(seen_entered(7, 42, 1000));
    seen_note(9, 5, 1, 1100); /* another pair entered: takes the slot */
    assert_true(seen_entered(9, 5, 1100));
    assert_false(seen_entered(7, 42, 1100)); /* forgotten, never confused */
}

static void test_off_when_no_slots_or_no_time(void **state)
{
    (void)state;
    assert_int_equal(seen_init(0, 2000), 0);
    seen_note(7, 42, 1, 1000);
    assert_false(seen_entered(7, 42, 1000));
    assert_int_equal(seen_init(1024, 0), 0);
    seen_note(7, 42, 1, 1000);
    assert_false(seen_entered(7, 42, 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_entered_for_keep_ms_then_not, teardown),
        cmocka_unit_test_teardown(test_a_newer_answer_renews_or_forgets, teardown),
        cmocka_unit_test_teardown(test_not_entered_forgets_only_its_own_entry, teardown),
        cmocka_unit_test_teardown(test_off_when_no_slots_or_no_time, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
