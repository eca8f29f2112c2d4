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

static int log_open(struct pplug *pp, const json_t *conf, void **state)
{
    const chatd_host *h = pp->host;
    chatd_plugin *p = pp->p;
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

/* One line per notification, written with one call and flushed: a reader
 * never sees half a line. Delivered once written. */
static int log_send(void *state, struct push_item *it, push_sent_fn sent, void *arg)
{
    struct log_state *ls = state;
    int ok = fwrite(it->body, 1, it->len, ls->f) == it->len && fputc('\n', ls->f) != EOF &&
             fflush(ls->f) == 0;
    sent(it, ok ? PUSH_DELIVERED : PUSH_RETRY, ok ? NULL : strerror(errno), arg);
    return 0;
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

const struct push_backend push_log = {"log", log_open, log_send, log_close};
