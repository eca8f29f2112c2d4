/* Unit tests for core/base/log.h: lines whole, and a reopen (SIGHUP, after
 * rotation) that never pulls the file from under a thread writing to it. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_after_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_while_workers_write, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
