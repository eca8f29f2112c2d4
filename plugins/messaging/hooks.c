/*
 * The hooks other plugins have on the message path (ABI 1.1): the filters a
 * WRITE_MESSAGE or EDIT_MESSAGE goes through before it is stored, and the
 * after-commit event of every stored change.
 *
 * A filter may answer later, so the writes of one channel wait in a line for
 * their verdicts and go on to the store in the order they came: the order a
 * client sent its messages in is the order of their sequences, filters or not.
 */
#include <stdlib.h>
#include <string.h>

#include "messaging.h"

struct line {
    struct mjob *head, *tail;
};

int hooks_init(struct mplug *mp)
{
    return (mp->lines = mp->host->map_new(0)) ? 0 : CHATD_ENOMEM;
}

static int drop_line(int64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key, (void)arg;
    free(value); /* its jobs were answered: the plugin stops after its requests */
    return 1;
}

void hooks_free(struct mplug *mp)
{
    if (!mp->lines)
        return;
    mp->host->map_sweep(mp->lines, drop_line, NULL);
    mp->host->map_free(mp->lines);
}

/* The content a filter gave, by the rules of content: NULL, or what is wrong. */
static const char *take_content(struct mjob *j, const char *content, chatd_error_code *code)
{
    *code = CHATD_ERR_BAD_REQUEST;
    if (!content || !*content)
        return "a filter left the message empty";
    if ((int64_t)strlen(content) > j->mp->max_content) {
        *code = CHATD_ERR_LIMIT_EXCEEDED;
        return "a filter made the content longer than max_content_bytes";
    }
    if (content == j->content)
        return NULL;
    char *copy = strdup(content);
    if (!copy) {
        *code = CHATD_ERR_INTERNAL;
        return "out of memory";
    }
    free(j->content);
    j->content = copy;
    return NULL;
}

/* Send on every job at the head of the line that has its verdict. */
static void flush(struct mplug *mp, int64_t channel_id)
{
    const chatd_host *h = mp->host;
    struct line *l = h->map_get(mp->lines, channel_id, NULL);
    while (l && l->head && l->head->filtered) {
        struct mjob *j = l->head;
        l->head = j->line_next;
        if (!l->head)
            l->tail = NULL;
        if (j->rejected) {
            h->error(j->req, j->reject_code, j->reject_message);
            messaging_job_free(j);
        } else {
            messaging_submit(j);
        }
    }
    if (l && !l->head)
        free(h->map_del(mp->lines, channel_id, NULL));
}

static void filtered(void *arg, int status, const char *content, chatd_error_code code,
                     const char *message)
{
    struct mjob *j = arg;
    const char *bad = NULL;
    if (status == 0)
        bad = take_content(j, content, &code);
    j->filtered = 1;
    if (status < 0 || bad) {
        j->rejected = 1;
        j->reject_code = code;
        j->reject_message = strdup(bad ? bad : message ? message : "refused by a filter");
        j->mp->host->count(j->mp->p, "messages_filtered_out", 1);
    }
    flush(j->mp, j->channel_id);
}

int hooks_filter(struct mjob *j, const char *type)
{
    struct mplug *mp = j->mp;
    const chatd_host *h = mp->host;
    struct line *l = h->map_get(mp->lines, j->channel_id, NULL);
    if (!l) {
        if (!(l = calloc(1, sizeof *l)) || h->map_put(mp->lines, j->channel_id, NULL, l) < 0) {
            free(l);
            return CHATD_ENOMEM;
        }
    }
    if (l->tail)
        l->tail->line_next = j;
    else
        l->head = j;
    l->tail = j;
    chatd_message_view view = {type, j->channel_id, j->me, j->me_name, j->seq, j->content};
    if (h->filter_message(&view, filtered, j) < 0)
        filtered(j, CHATD_ENOMEM, NULL, CHATD_ERR_INTERNAL, "out of memory");
    return 0;
}

void hooks_stored(struct mjob *j, const char *kind, json_t *extra)
{
    const chatd_host *h = j->mp->host;
    if (!h->event_subscribed(CHATD_EVENT_MESSAGE_STORED)) {
        json_decref(extra);
        return;
    }
    json_t *body =
        json_pack("{s:s, s:o, s:I, s:I, s:s}", "kind", kind, "channelId",
                  util_channel_json(j->channel_id), "messageSequence", (json_int_t)j->seq,
                  "version", (json_int_t)j->version, "username", j->me_name);
    if (body && extra)
        json_object_update(body, extra);
    json_decref(extra);
    chatd_event ev = {.type = CHATD_EVENT_MESSAGE_STORED,
                      .user_id = j->me,
                      .username = j->me_name,
                      .channel_id = j->channel_id,
                      .body = body};
    if (body)
        h->emit(j->mp->p, &ev);
    json_decref(body);
}
