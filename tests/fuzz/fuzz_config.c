/*
 * fuzz_config: the input as a configuration file, read by config_load() with
 * the schema checks and the plugins list; an input of one line is also tried
 * as a --set override (PATH=VALUE) on top of the defaults.
 *
 * Inputs with an @include directive are skipped: the file would be read from
 * anywhere on this machine (/dev/zero, say), which tests libconfig and the
 * machine rather than chatd, and the configuration is trusted input anyway.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5 (Debian 12) loses memory of its scanner on some syntax
 * errors, config_destroy() notwithstanding: a string literal followed by
 * garbage leaks a calloc() of libconfig_yylex (seed
 * libconfig-lexer-leak.conf), an unterminated string the buffer of
 * strbuf_append (seed libconfig-strbuf-leak.conf). Both reproduce with
 * libconfig alone (config_init, config_read_file, config_destroy), so they
 * are ignored here; leaks from any other allocation are still reported. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig_yylex\nleak:strbuf_append\n";
}

static char path[256]; /* the file each input is written to */

static void remove_file(void)
{
    if (path[0])
        unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/chatd-fuzz-config-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr, "fuzz_config: mkstemp %s: %s\n", path, strerror(errno));
        exit(1);
    }
    close(fd);
    atexit(remove_file);
    return 0;
}

static int has_include(const char *text)
{
    for (const char *p = text; (p = strchr(p, '@')); p++)
        if (strncasecmp(p + 1, "include", 7) == 0)
            return 1;
    return 0;
}

/* What the rest of start-up relies on in a configuration config_load()
 * accepted: plugins_load_all() takes every entry's "name" as a string. */
static void check(int rc, struct settings *s)
{
    if (rc != 0)
        return;
    log_level_parse(s->log_level);
    size_t i;
    json_t *p;
    json_array_foreach(s->plugins, i, p)
    {
        const char *name = json_string_value(json_object_get(p, "name"));
        if (!json_is_object(p) || !name || !*name) {
            fprintf(stderr,
                    "fuzz_config: config_load() accepted plugins entry %zu without a string "
                    "\"name\" (plugins_load_all() would dereference NULL)\n",
                    i);
            abort();
        }
    }
    config_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (has_include(text)) {
        free(text);
        return 0;
    }
    struct settings s;
    char err[512];

    FILE *f = fopen(path, "w");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "fuzz_config: cannot write %s\n", path);
        abort();
    }
    check(config_load(path, NULL, 0, &s, err, sizeof err), &s);

    if (!memchr(data, '\n', size) && !memchr(data, '\0', size)) {
        const char *ov = text;
        check(config_load(NULL, &ov, 1, &s, err, sizeof err), &s);
    }
    free(text);
    return 0;
}
