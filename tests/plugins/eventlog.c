/*
 * A subscriber of the after-commit stream for the hook tests: every
 * CHATD_EVENT_MESSAGE_STORED is appended to the file of its setting `file`
 * (relative to server.data_dir) as one JSON line
 *   {"channelId": N, "userId": N, "username": "...", "event": {body}}
 * with one write(2) each, so that a kill -9 leaves whole lines only. No
 * fsync: what write(2) handed the kernel outlives the process, which is all
 * a kill -9 test needs (not a power cut), and the loop never waits on a disk.
 */
#include <chatd/plugin.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct eventlog {
    chatd_plugin *p;
    const chatd_host *host;
    int fd;
};

static void on_stored(const chatd_event *ev, void *state)
{
    struct eventlog *el = state;
    json_t *line = json_pack("{s:I, s:I, s:s, s:O}", "channelId", (json_int_t)ev->channel_id,
                             "userId", (json_int_t)ev->user_id, "username",
                             ev->username ? ev->username : "", "event", (json_t *)ev->body);
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (!text) {
        el->host->log(el->p, CHATD_LOG_ERROR, "cannot encode an event");
        return;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps' NUL becomes the line's end */
    if (write(el->fd, text, n + 1) != (ssize_t)(n + 1))
        el->host->log(el->p, CHATD_LOG_ERROR, "cannot write an event: %s", strerror(errno));
    free(text);
}

static int eventlog_init(chatd_plugin *p, const chatd_host *host, const json_t *config,
                         void **state)
{
    const char *file = json_string_value(json_object_get(config, "file"));
    char path[4096];
    if (!file || !*file) {
        host->log(p, CHATD_LOG_ERROR, "setting 'file' is required");
        return CHATD_EINVAL;
    }
    snprintf(path, sizeof path, "%s%s%s", file[0] == '/' ? "" : host->data_dir(),
             file[0] == '/' ? "" : "/", file);
    struct eventlog *el = calloc(1, sizeof *el);
    if (!el)
        return CHATD_ENOMEM;
    *state = el;
    el->p = p;
    el->host = host;
    if ((el->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        host->log(p, CHATD_LOG_ERROR, "cannot open %s: %s", path, strerror(errno));
        return CHATD_EINVAL;
    }
    return host->on_event(p, CHATD_EVENT_MESSAGE_STORED, on_stored);
}

static void eventlog_cleanup(void *state)
{
    struct eventlog *el = state;
    if (el->fd >= 0)
        close(el->fd);
    free(el);
}

static const chatd_setting eventlog_settings[] = {
    CHATD_STRING_SETTING("file", NULL, NULL, "the file of JSON lines (relative to data_dir)"),
    CHATD_SETTINGS_END,
};

static const chatd_plugin_desc eventlog_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "eventlog",          .version = "1.0",
    .init = eventlog_init,  .cleanup = eventlog_cleanup, .settings = eventlog_settings,
};

CHATD_PLUGIN(eventlog_desc)
