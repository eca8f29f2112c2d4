/* The redis push backend: XADD each notification to a stream (setting
 * `stream`, default "chatd:push") for push workers (chatd-push) to consume.
 * Entries carry id, userId, username, the event's JSON and the whole body a
 * worker delivers; the stream is capped near `max_length` entries. A
 * notification is delivered, for this node, once Redis took it. */
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

static int redis_open(struct pplug *pp, const json_t *conf, void **state)
{
    const chatd_host *h = pp->host;
    chatd_plugin *p = pp->p;
    if (!CHATD_HOST_HAS(h, redis_command)) {
        h->log(p, CHATD_LOG_ERROR, "this chatd cannot send Redis commands");
        return CHATD_EINVAL;
    }
    const json_t *stream = json_object_get(conf, "stream");
    int64_t max_length;
    if ((stream && !json_is_string(stream)) ||
        util_setting_int(h, p, conf, push_settings_decl, "max_length", &max_length) < 0) {
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

struct xadd {
    struct push_item *it;
    push_sent_fn sent;
    void *arg;
};

static void added(void *arg, int status)
{
    struct xadd *x = arg;
    x->sent(x->it, status < 0 ? PUSH_RETRY : PUSH_DELIVERED,
            status < 0 ? "redis unavailable" : NULL, x->arg);
    free(x);
}

static int redis_send(void *state, struct push_item *it, push_sent_fn sent, void *arg)
{
    struct redis_state *rs = state;
    json_t *body = json_loadb(it->body, it->len, 0, NULL);
    char uid[24];
    snprintf(uid, sizeof uid, "%lld", (long long)it->user_id);
    const char *username = json_string_value(json_object_get(body, "username"));
    char *event = json_dumps(json_object_get(body, "event"), JSON_COMPACT);
    struct xadd *x = event ? malloc(sizeof *x) : NULL;
    int rc = x ? 0 : CHATD_ENOMEM;
    if (x) {
        *x = (struct xadd){it, sent, arg};
        const char *argv[] = {"XADD",     rs->stream, "MAXLEN",   "~",
                              rs->maxlen, "*",        "id",       it->id,
                              "userId",   uid,        "username", username ? username : "",
                              "event",    event,      "body",     it->body};
        size_t lens[sizeof argv / sizeof argv[0]];
        for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++)
            lens[i] = strlen(argv[i]);
        if ((rc = rs->h->redis_command((int)(sizeof argv / sizeof argv[0]), argv, lens, added, x)) <
            0)
            free(x);
    }
    free(event);
    json_decref(body);
    return rc;
}

static void redis_close(void *state)
{
    free(state);
}

const struct push_backend push_redis = {"redis", redis_open, redis_send, redis_close};
