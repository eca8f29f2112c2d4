/* The log push backend: one JSON line per notification appended to a file,
 * for development and tests (a stand-in for a real push gateway). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"

struct log_state {
    FILE *f;
    char *path;
};

static int log_open(const chatd_host *h, chatd_plugin *p, const json_t *conf, void **state)
{
    const json_t *file = json_object_get(conf, "file");
    const char *name = json_is_string(file) ? json_string_value(file) : "push.log";
    if (file && !json_is_string(file)) {
        h->log(p, CHATD_LOG_ERROR, "setting 'file' must be a string");
        return CHATD_EINVAL;
    }
    struct log_state *ls = calloc(1, sizeof *ls);
    if (!ls)
        return CHATD_ENOMEM;
    size_t n = strlen(h->data_dir()) + strlen(name) + 2;
    if (!(ls->path = malloc(n))) {
        free(ls);
        return CHATD_ENOMEM;
    }
    if (name[0] == '/')
        snprintf(ls->path, n, "%s", name);
    else
        snprintf(ls->path, n, "%s/%s", h->data_dir(), name);
    if (!(ls->f = fopen(ls->path, "a"))) {
        h->log(p, CHATD_LOG_ERROR, "cannot open push log %s: %s", ls->path, strerror(errno));
        free(ls->path);
        free(ls);
        return CHATD_EINVAL;
    }
    h->log(p, CHATD_LOG_INFO, "push notifications go to %s", ls->path);
    *state = ls;
    return 0;
}

static int log_deliver(void *state, const json_t *notification)
{
    struct log_state *ls = state;
    /* Encoded once and written with one call: a reader never sees half a
     * line, and a notification costs one write, not one per JSON token. */
    size_t len = json_dumpb(notification, NULL, 0, JSON_COMPACT);
    char stackbuf[2048];
    char *line = len + 1 <= sizeof stackbuf ? stackbuf : malloc(len + 1);
    if (!line || json_dumpb(notification, line, len, JSON_COMPACT) != len) {
        if (line != stackbuf)
            free(line);
        return CHATD_ENOMEM;
    }
    line[len] = '\n';
    int rc = fwrite(line, 1, len + 1, ls->f) == len + 1 && fflush(ls->f) == 0 ? 0 : CHATD_EUNAVAIL;
    if (line != stackbuf)
        free(line);
    return rc;
}

static void log_close(void *state)
{
    struct log_state *ls = state;
    if (!ls)
        return;
    fclose(ls->f);
    free(ls->path);
    free(ls);
}

const struct push_backend push_log = {"log", log_open, log_deliver, log_close};
