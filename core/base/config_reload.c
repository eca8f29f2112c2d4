/* A reload: which settings can change while chatd runs, and moving them in. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "config_schema.h"

/* What a reload can change in a running chatd (a path, or a group ending in
 * '.'): limits, the log, the web root, origins, proxies, the admin token. */
static const char *const live_settings[] = {"http.max_head_size",
                                            "http.max_body_size",
                                            "http.max_headers",
                                            "http.keepalive_timeout",
                                            "http.web_root",
                                            "http.allowed_origins",
                                            "http.trusted_proxies",
                                            "ws.",
                                            "server.max_connections",
                                            "server.max_connections_per_addr",
                                            "session.ttl",
                                            "session.end_confirm_ms",
                                            "log.level",
                                            "log.format",
                                            "log.file",
                                            "admin.token",
                                            "hooks.filter_timeout_ms",
                                            NULL};

static int is_live(const char *path)
{
    for (const char *const *l = live_settings; *l; l++) {
        size_t n = strlen(*l);
        if ((*l)[n - 1] == '.' ? strncmp(path, *l, n) == 0 : strcmp(path, *l) == 0)
            return 1;
    }
    return 0;
}

static int same_value(const struct schema *sc, const struct settings *a, const struct settings *b)
{
    const char *pa = (const char *)a + sc->offset, *pb = (const char *)b + sc->offset;
    if (sc->kind == K_INT)
        return *(const int64_t *)pa == *(const int64_t *)pb;
    if (sc->kind == K_STR)
        return strcmp(*(char *const *)pa, *(char *const *)pb) == 0;
    char *const *la = *(char **const *)pa, *const *lb = *(char **const *)pb;
    for (; *la && *lb; la++, lb++)
        if (strcmp(*la, *lb) != 0)
            return 0;
    return !*la && !*lb;
}

static void note_path(char *list, size_t len, const char *path)
{
    size_t n = strlen(list);
    snprintf(list + n, len - n, "%s%s", n ? ", " : "", path);
}

int config_apply_live(struct settings *cur, struct settings *next, char *applied,
                      size_t applied_len, char *restart, size_t restart_len)
{
    int changed = 0;
    applied[0] = restart[0] = '\0';
    for (size_t i = 0; i < config_schema_len; i++) {
        const struct schema *sc = &config_schema[i];
        if (same_value(sc, cur, next))
            continue;
        if (!is_live(sc->path)) {
            note_path(restart, restart_len, sc->path);
            continue;
        }
        /* swapped, not copied: next (freed by the caller) takes the old value */
        char *pc = (char *)cur + sc->offset, *pn = (char *)next + sc->offset, tmp[sizeof(void *)];
        size_t size = sc->kind == K_INT ? sizeof(int64_t) : sizeof(void *);
        memcpy(tmp, pc, size);
        memcpy(pc, pn, size);
        memcpy(pn, tmp, size);
        note_path(applied, applied_len, sc->path);
        changed++;
    }
    if (!json_equal(cur->plugins, next->plugins))
        note_path(restart, restart_len, "plugins");
    return changed;
}
