/* Unit tests for core/hmap.h: id and string keyed open-addressing maps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hmap.h"

/* Values are fake pointers derived from an integer; the map never
 * dereferences them. Offset by one so that no value is NULL. */
#define VAL(n) ((void *)(uintptr_t)((uint64_t)(n) + 1))

static void test_free_null(void **state)
{
    (void)state;
    hmap_free(NULL);
}

static void test_empty_map(void **state)
{
    (void)state;
    for (int sk = 0; sk <= 1; sk++) {
        hmap *m = hmap_new(sk);
        assert_non_null(m);
        assert_int_equal(hmap_count(m), 0);
        if (sk) {
            assert_null(hmap_get_str(m, "nothing"));
            assert_null(hmap_del_str(m, "nothing"));
        } else {
            assert_null(hmap_get_id(m, 0));
            assert_null(hmap_get_id(m, 42));
            assert_null(hmap_del_id(m, 42));
        }
        size_t pos = 0;
        void *v = NULL;
        assert_int_equal(hmap_iter(m, &pos, NULL, NULL, &v), 0);
        assert_int_equal(hmap_count(m), 0);
        hmap_free(m);
    }
}

static void test_id_put_get_replace_del(void **state)
{
    (void)state;
    hmap *m = hmap_new(0);
    assert_non_null(m);

    assert_int_equal(hmap_put_id(m, 1, VAL(100)), 0);
    assert_int_equal(hmap_put_id(m, 2, VAL(200)), 0);
    assert_int_equal(hmap_put_id(m, 0, VAL(0)), 0);          /* zero is a valid key */
    assert_int_equal(hmap_put_id(m, UINT64_MAX, VAL(7)), 0); /* so is the largest */
    assert_int_equal(hmap_count(m), 4);

    assert_ptr_equal(hmap_get_id(m, 1), VAL(100));
    assert_ptr_equal(hmap_get_id(m, 2), VAL(200));
    assert_ptr_equal(hmap_get_id(m, 0), VAL(0));
    assert_ptr_equal(hmap_get_id(m, UINT64_MAX), VAL(7));
    assert_null(hmap_get_id(m, 3));

    /* Replace keeps the count and changes the value. */
    assert_int_equal(hmap_put_id(m, 1, VAL(101)), 0);
    assert_int_equal(hmap_count(m), 4);
    assert_ptr_equal(hmap_get_id(m, 1), VAL(101));

    /* Delete returns the value and removes only that key. */
    assert_ptr_equal(hmap_del_id(m, 1), VAL(101));
    assert_int_equal(hmap_count(m), 3);
    assert_null(hmap_get_id(m, 1));
    assert_null(hmap_del_id(m, 1));
    assert_int_equal(hmap_count(m), 3);
    assert_ptr_equal(hmap_get_id(m, 2), VAL(200));
    assert_ptr_equal(hmap_get_id(m, 0), VAL(0));

    assert_ptr_equal(hmap_del_id(m, 0), VAL(0));
    assert_ptr_equal(hmap_del_id(m, UINT64_MAX), VAL(7));
    assert_ptr_equal(hmap_del_id(m, 2), VAL(200));
    assert_int_equal(hmap_count(m), 0);

    /* The map is usable again after being emptied. */
    assert_int_equal(hmap_put_id(m, 2, VAL(2)), 0);
    assert_ptr_equal(hmap_get_id(m, 2), VAL(2));
    assert_int_equal(hmap_count(m), 1);
    hmap_free(m);
}

static void test_str_put_get_replace_del(void **state)
{
    (void)state;
    hmap *m = hmap_new(1);
    assert_non_null(m);

    /* The map copies keys: the caller's buffer may change afterwards. */
    char key[32];
    strcpy(key, "alice");
    assert_int_equal(hmap_put_str(m, key, VAL(1)), 0);
    strcpy(key, "XXXXX");
    assert_ptr_equal(hmap_get_str(m, "alice"), VAL(1));
    assert_null(hmap_get_str(m, "XXXXX"));

    assert_int_equal(hmap_put_str(m, "bob", VAL(2)), 0);
    assert_int_equal(hmap_put_str(m, "", VAL(3)), 0);       /* empty key */
    assert_int_equal(hmap_put_str(m, "alic", VAL(4)), 0);   /* prefix of another key */
    assert_int_equal(hmap_put_str(m, "alice2", VAL(5)), 0); /* extension of another key */
    assert_int_equal(hmap_put_str(m, "Alice", VAL(6)), 0);  /* case matters */
    assert_int_equal(hmap_count(m), 6);

    assert_ptr_equal(hmap_get_str(m, "alice"), VAL(1));
    assert_ptr_equal(hmap_get_str(m, "bob"), VAL(2));
    assert_ptr_equal(hmap_get_str(m, ""), VAL(3));
    assert_ptr_equal(hmap_get_str(m, "alic"), VAL(4));
    assert_ptr_equal(hmap_get_str(m, "alice2"), VAL(5));
    assert_ptr_equal(hmap_get_str(m, "Alice"), VAL(6));
    assert_null(hmap_get_str(m, "carol"));
    assert_null(hmap_get_str(m, "ali"));

    /* Replace with a different buffer holding the same text. */
    strcpy(key, "bob");
    assert_int_equal(hmap_put_str(m, key, VAL(20)), 0);
    assert_int_equal(hmap_count(m), 6);
    assert_ptr_equal(hmap_get_str(m, "bob"), VAL(20));

    assert_ptr_equal(hmap_del_str(m, "bob"), VAL(20));
    assert_null(hmap_get_str(m, "bob"));
    assert_null(hmap_del_str(m, "bob"));
    assert_ptr_equal(hmap_del_str(m, ""), VAL(3));
    assert_int_equal(hmap_count(m), 4);
    assert_ptr_equal(hmap_get_str(m, "alice"), VAL(1));
    assert_ptr_equal(hmap_get_str(m, "alic"), VAL(4));

    /* Freeing a map that still holds string keys frees the copies (ASan). */
    hmap_free(m);
}

static void test_values_are_not_owned(void **state)
{
    (void)state;
    hmap *m = hmap_new(1);
    assert_non_null(m);
    char *v = strdup("owned by the caller");
    assert_non_null(v);
    assert_int_equal(hmap_put_str(m, "k", v), 0);
    hmap_free(m);
    /* Still ours to use and free. */
    assert_string_equal(v, "owned by the caller");
    free(v);
}

#define MANY 100000

static void test_many_ids(void **state)
{
    (void)state;
    hmap *m = hmap_new(0);
    assert_non_null(m);
    /* Spread-out keys plus a dense run, so both hash paths see collisions. */
    for (uint64_t i = 0; i < MANY; i++)
        assert_int_equal(hmap_put_id(m, i * 7919u, VAL(i)), 0);
    assert_int_equal(hmap_count(m), MANY);
    for (uint64_t i = 0; i < MANY; i++)
        assert_ptr_equal(hmap_get_id(m, i * 7919u), VAL(i));

    for (uint64_t i = 1; i < MANY; i += 2)
        assert_ptr_equal(hmap_del_id(m, i * 7919u), VAL(i));
    assert_int_equal(hmap_count(m), MANY / 2);

    for (uint64_t i = 0; i < MANY; i++) {
        if (i % 2 == 0)
            assert_ptr_equal(hmap_get_id(m, i * 7919u), VAL(i));
        else
            assert_null(hmap_get_id(m, i * 7919u));
    }
    /* Keys never inserted. */
    for (uint64_t i = 0; i < 1000; i++)
        assert_null(hmap_get_id(m, (uint64_t)MANY * 7919u + i * 7919u + 1));

    /* Re-insert the deleted ones and delete the others. */
    for (uint64_t i = 1; i < MANY; i += 2)
        assert_int_equal(hmap_put_id(m, i * 7919u, VAL(i + MANY)), 0);
    for (uint64_t i = 0; i < MANY; i += 2)
        assert_ptr_equal(hmap_del_id(m, i * 7919u), VAL(i));
    assert_int_equal(hmap_count(m), MANY / 2);
    for (uint64_t i = 0; i < MANY; i++) {
        if (i % 2)
            assert_ptr_equal(hmap_get_id(m, i * 7919u), VAL(i + MANY));
        else
            assert_null(hmap_get_id(m, i * 7919u));
    }
    hmap_free(m);
}

static void test_many_strings(void **state)
{
    (void)state;
    hmap *m = hmap_new(1);
    assert_non_null(m);
    char key[32];
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof key, "user-%d", i);
        assert_int_equal(hmap_put_str(m, key, VAL(i)), 0);
    }
    assert_int_equal(hmap_count(m), MANY);
    for (int i = 0; i < MANY; i += 2) {
        snprintf(key, sizeof key, "user-%d", i);
        assert_ptr_equal(hmap_del_str(m, key), VAL(i));
    }
    assert_int_equal(hmap_count(m), MANY / 2);
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof key, "user-%d", i);
        if (i % 2)
            assert_ptr_equal(hmap_get_str(m, key), VAL(i));
        else
            assert_null(hmap_get_str(m, key));
    }
    assert_null(hmap_get_str(m, "user-"));
    assert_null(hmap_get_str(m, "user-100000"));
    hmap_free(m);
}

/* Small deterministic PRNG (xorshift64*) so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/*
 * Random puts and deletes over a small key space, checked against a plain
 * array after every step. With few slots in the table, probe runs often
 * wrap from the last slot to the first, so deletions shift entries back
 * across the wraparound many times.
 */
static void test_random_against_model(void **state)
{
    (void)state;
    for (int round = 0; round < 40; round++) {
        const unsigned nkeys = 4 + (unsigned)(rnd() % 60);
        void *model[64] = {0};
        size_t present = 0;
        hmap *m = hmap_new(0);
        assert_non_null(m);
        /* Keys scattered over the whole 64-bit range. */
        uint64_t keys[64];
        for (unsigned k = 0; k < nkeys; k++)
            keys[k] = rnd();
        for (int step = 0; step < 4000; step++) {
            unsigned k = (unsigned)(rnd() % nkeys);
            if (rnd() % 3) {
                void *v = VAL(rnd() & 0xffffff);
                assert_int_equal(hmap_put_id(m, keys[k], v), 0);
                if (!model[k])
                    present++;
                model[k] = v;
            } else {
                assert_ptr_equal(hmap_del_id(m, keys[k]), model[k]);
                if (model[k])
                    present--;
                model[k] = NULL;
            }
            assert_int_equal(hmap_count(m), present);
            for (unsigned j = 0; j < nkeys; j++)
                assert_ptr_equal(hmap_get_id(m, keys[j]), model[j]);
        }
        hmap_free(m);
    }
}

static void test_random_strings_against_model(void **state)
{
    (void)state;
    char names[48][16];
    for (int k = 0; k < 48; k++)
        snprintf(names[k], sizeof names[k], "key-%d", k);
    for (int round = 0; round < 20; round++) {
        void *model[48] = {0};
        size_t present = 0;
        hmap *m = hmap_new(1);
        assert_non_null(m);
        for (int step = 0; step < 3000; step++) {
            unsigned k = (unsigned)(rnd() % 48);
            if (rnd() % 2) {
                void *v = VAL(step);
                assert_int_equal(hmap_put_str(m, names[k], v), 0);
                if (!model[k])
                    present++;
                model[k] = v;
            } else {
                assert_ptr_equal(hmap_del_str(m, names[k]), model[k]);
                if (model[k])
                    present--;
                model[k] = NULL;
            }
            assert_int_equal(hmap_count(m), present);
        }
        for (int j = 0; j < 48; j++)
            assert_ptr_equal(hmap_get_str(m, names[j]), model[j]);
        hmap_free(m);
    }
}

static void test_iterate_ids(void **state)
{
    (void)state;
    enum { N = 5000 };
    hmap *m = hmap_new(0);
    assert_non_null(m);
    for (uint64_t i = 0; i < N; i++)
        assert_int_equal(hmap_put_id(m, i * 3 + 11, VAL(i)), 0);
    /* Remove some so the table has holes. */
    for (uint64_t i = 0; i < N; i += 5)
        assert_ptr_equal(hmap_del_id(m, i * 3 + 11), VAL(i));

    unsigned char *seen = calloc(N, 1);
    assert_non_null(seen);
    size_t pos = 0, visits = 0;
    uint64_t id;
    const char *skey = (const char *)1;
    void *v;
    while (hmap_iter(m, &pos, &id, &skey, &v)) {
        assert_true(id >= 11 && (id - 11) % 3 == 0);
        uint64_t i = (id - 11) / 3;
        assert_true(i < N);
        assert_true(i % 5 != 0);      /* deleted keys are not visited */
        assert_ptr_equal(v, VAL(i));  /* the value goes with its key */
        assert_int_equal(seen[i], 0); /* each entry once */
        seen[i] = 1;
        visits++;
    }
    assert_int_equal(visits, hmap_count(m));
    assert_int_equal(visits, N - N / 5);
    for (uint64_t i = 0; i < N; i++)
        assert_int_equal(seen[i], i % 5 != 0);
    /* The end stays the end. */
    assert_int_equal(hmap_iter(m, &pos, &id, NULL, &v), 0);

    /* Output pointers may be NULL. */
    pos = 0;
    visits = 0;
    while (hmap_iter(m, &pos, NULL, NULL, NULL))
        visits++;
    assert_int_equal(visits, hmap_count(m));
    free(seen);
    hmap_free(m);
}

static void test_iterate_strings(void **state)
{
    (void)state;
    enum { N = 3000 };
    hmap *m = hmap_new(1);
    assert_non_null(m);
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "name%d", i);
        assert_int_equal(hmap_put_str(m, key, VAL(i)), 0);
    }
    unsigned char *seen = calloc(N, 1);
    assert_non_null(seen);
    size_t pos = 0, visits = 0;
    const char *k;
    void *v;
    while (hmap_iter(m, &pos, NULL, &k, &v)) {
        assert_non_null(k);
        int i;
        assert_int_equal(sscanf(k, "name%d", &i), 1);
        assert_true(i >= 0 && i < N);
        assert_ptr_equal(v, VAL(i));
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        visits++;
    }
    assert_int_equal(visits, N);
    free(seen);
    hmap_free(m);
}

/* Collect the keys during a walk, delete them afterwards (the pattern
 * used to sweep expired entries). */
static void test_collect_then_delete(void **state)
{
    (void)state;
    hmap *m = hmap_new(1);
    assert_non_null(m);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "s%d", i);
        assert_int_equal(hmap_put_str(m, key, VAL(i)), 0);
    }
    char **doomed = calloc(1000, sizeof *doomed);
    assert_non_null(doomed);
    size_t n = 0, pos = 0;
    const char *k;
    void *v;
    while (hmap_iter(m, &pos, NULL, &k, &v))
        if (((uintptr_t)v - 1) % 3 == 0) {
            doomed[n] = strdup(k);
            assert_non_null(doomed[n]);
            n++;
        }
    for (size_t i = 0; i < n; i++) {
        assert_non_null(hmap_del_str(m, doomed[i]));
        free(doomed[i]);
    }
    free(doomed);
    assert_int_equal(hmap_count(m), 1000 - 334);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "s%d", i);
        if (i % 3 == 0)
            assert_null(hmap_get_str(m, key));
        else
            assert_ptr_equal(hmap_get_str(m, key), VAL(i));
    }
    hmap_free(m);
}

static int drop_odd(uint64_t id, const char *str, void *value, void *arg)
{
    (void)str, (void)value;
    int *seen = arg;
    seen[id]++;
    return id % 2 == 1;
}

/* hmap_sweep sees every entry once while deleting, whatever the probe runs:
 * many keys on few slots make long runs that wrap around the table. */
static void test_sweep_deletes_while_walking(void **state)
{
    (void)state;
    enum { N = 3000 };
    for (int round = 0; round < 20; round++) {
        hmap *m = hmap_new(0);
        static int seen[N];
        memset(seen, 0, sizeof seen);
        int n = 10 + round * 149;
        for (int i = 0; i < n; i++)
            assert_int_equal(hmap_put_id(m, (uint64_t)i, (void *)(intptr_t)(i + 1)), 0);
        size_t removed = hmap_sweep(m, drop_odd, seen);
        assert_int_equal(removed, (size_t)(n / 2));
        assert_int_equal(hmap_count(m), (size_t)(n - n / 2));
        for (int i = 0; i < n; i++) {
            assert_int_equal(seen[i], 1);
            if (i % 2)
                assert_null(hmap_get_id(m, (uint64_t)i));
            else
                assert_ptr_equal(hmap_get_id(m, (uint64_t)i), (void *)(intptr_t)(i + 1));
        }
        hmap_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_empty_map),
        cmocka_unit_test(test_id_put_get_replace_del),
        cmocka_unit_test(test_str_put_get_replace_del),
        cmocka_unit_test(test_values_are_not_owned),
        cmocka_unit_test(test_many_ids),
        cmocka_unit_test(test_many_strings),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_random_strings_against_model),
        cmocka_unit_test(test_iterate_ids),
        cmocka_unit_test(test_iterate_strings),
        cmocka_unit_test(test_collect_then_delete),
        cmocka_unit_test(test_sweep_deletes_while_walking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
