/* The redis push backend: XADD each notification to a stream (setting
 * `stream`, default "chatd:push") for an external push worker to consume.
 * Entries carry userId, username and the event's JSON; the stream is capped
 * near `max_length` entries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"

struct redis_state {
    const chatd_host *h;
    chatd_plugin *p;
    char stream[128];
    char maxlen[24];
};

static int redis_open(const chatd_host *h, chatd_plugin *p, const json_t *conf, void **state)
{
    if (!CHATD_HOST_HAS(h, redis_command)) {
        h->log(p, CHATD_LOG_ERROR, "this chatd cannot send Redis commands");
        return CHATD_EINVAL;
    }
    const json_t *stream = json_object_get(conf, "stream");
    int64_t max_length;
    if ((stream && !json_is_string(stream)) ||
        util_conf_int(h, p, conf, "max_length", 1000000, 1, INT64_MAX, &max_length) < 0) {
        h->log(p, CHATD_LOG_ERROR, "setting 'stream' must be a string");
        return CHATD_EINVAL;
    }
    struct redis_state *rs = calloc(1, sizeof *rs);
    if (!rs)
        return CHATD_ENOMEM;
    rs->h = h;
    rs->p = p;
    snprintf(rs->stream, sizeof rs->stream, "%s",
             stream ? json_string_value(stream) : "chatd:push");
    snprintf(rs->maxlen, sizeof rs->maxlen, "%lld", (long long)max_length);
    h->log(p, CHATD_LOG_INFO, "push notifications go to the redis stream %s", rs->stream);
    *state = rs;
    return 0;
}

static void added(void *arg, int status)
{
    struct redis_state *rs = arg;
    if (status < 0) {
        rs->h->count(rs->p, "push_failed", 1);
        rs->h->log(rs->p, CHATD_LOG_WARN, "XADD to %s failed: redis unavailable", rs->stream);
    }
}

static int redis_deliver(void *state, const json_t *n)
{
    struct redis_state *rs = state;
    char uid[24];
    snprintf(uid, sizeof uid, "%lld", (long long)json_integer_value(json_object_get(n, "userId")));
    const char *username = json_string_value(json_object_get(n, "username"));
    char *event = json_dumps(json_object_get(n, "event"), JSON_COMPACT);
    if (!event)
        return CHATD_ENOMEM;
    const char *argv[] = {"XADD",  rs->stream, "MAXLEN", "~",        rs->maxlen,
                          "*",     "userId",   uid,      "username", username ? username : "",
                          "event", event};
    size_t lens[sizeof argv / sizeof argv[0]];
    for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++)
        lens[i] = strlen(argv[i]);
    int rc = rs->h->redis_command((int)(sizeof argv / sizeof argv[0]), argv, lens, added, rs);
    free(event);
    return rc;
}

static void redis_close(void *state)
{
    free(state);
}

const struct push_backend push_redis = {"redis", redis_open, redis_deliver, redis_close};
