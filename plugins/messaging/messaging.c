/* The messaging plugin's requests: how each is read, run and answered. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging.h"
#include "wire.h"

/* The settings of this plugin's config entry (checked by the core). */
static const chatd_setting messaging_settings[] = {
    CHATD_STRING_SETTING("backend", NULL, util_sql_backends, "the SQL store of messages"),
    CHATD_INT_SETTING("max_content_bytes", 4096, 1, 1 << 24,
                      "bytes of a message's content (more: LIMIT_EXCEEDED)"),
    CHATD_INT_SETTING("max_writes_per_second", 500, 1, 10000000,
                      "WRITE_MESSAGEs per second per user (token bucket)"),
    CHATD_INT_SETTING("write_burst", 5000, 1, 10000000,
                      "writes a user may send at once before max_writes_per_second applies"),
    CHATD_INT_SETTING("member_cache_channels", 4096, 0, 1 << 20,
                      "channels whose member lists are kept between writes"),
    CHATD_INT_SETTING("member_cache_members", 200000, 0, 100000000,
                      "members held in those lists in all"),
    CHATD_INT_SETTING("member_cache_min_members", 1, 1, 100000000,
                      "lists shorter than this are not kept"),
    CHATD_INT_SETTING("entered_check_max_members", 256, 0, 100000000,
                      "a write to a channel this small writes no push intent when every "
                      "member is entered (here, or lately on another node) (0: always one)"),
    CHATD_INT_SETTING("batch_writes", 1, 0, 1,
                      "1: the writes and read acks of one storage batch share their statements "
                      "(a few for all); 0: each has its own (five per message)"),
    CHATD_INT_SETTING("edit_window", 0, 0, 100LL * 365 * 86400,
                      "seconds after createdAt the author may edit (0: always)"),
    CHATD_INT_SETTING("max_reactions_per_message", 20, 1, 10000, "distinct emoji on one message"),
    CHATD_INT_SETTING("read_notify_interval_ms", 500, 0, 3600000,
                      "NOTIFY_READ at most once per member and channel per this many ms"),
    CHATD_INT_SETTING("read_notify_channel_rate", 20, 1, 1000000,
                      "NOTIFY_READs per second a channel's members are told in all, about"),
    CHATD_INT_SETTING("typing_interval_ms", 2000, 0, 3600000,
                      "NOTIFY_TYPING at most once per user and channel per this many ms"),
    CHATD_INT_SETTING("typing_channel_rate", 5, 1, 1000000,
                      "NOTIFY_TYPINGs per second per channel on a node"),
    CHATD_SETTINGS_END,
};

void messaging_job_free(struct mjob *j)
{
    free(j->reject_message);
    free(j->content);
    mcache_release(j->mp->members, j->members);
    free(j->member_ids);
    free(j->member_name_ptrs);
    json_decref(j->list);
    json_decref(j->note);
    free(j);
}

static const char *problem_of(const struct mjob *j, int status)
{
    if (j->problem)
        return j->problem;
    switch (status) {
    case CHATD_ENOTFOUND:
        return "no such channel";
    case CHATD_EFORBIDDEN:
        return "you are not a member of this channel";
    }
    return "failed";
}

static void done(void *arg, int status)
{
    struct mjob *j = arg;
    if (status < 0)
        util_error_status(j->mp->host, j->req, status, problem_of(j, status));
    else
        j->op->answer(j);
    messaging_job_free(j);
}

/* ---- answers ---- */

/* After the commit: the ack, then live delivery, then push for the rest. */
static void answer_write(struct mjob *j)
{
    const chatd_host *h = j->mp->host;
    char at[32];
    util_time_rfc3339(j->created_ms, at, sizeof at);
    h->reply(j->req, "WRITE_MESSAGE_ACK",
             json_pack("{s:o, s:I, s:o, s:s, s:I}", "channelId", util_channel_json(j->channel_id),
                       "messageSequence", (json_int_t)j->seq, "clientMessageId",
                       j->has_client_id ? json_string(j->client_id) : json_null(), "createdAt", at,
                       "version", (json_int_t)j->version));
    if (j->duplicate || !j->note)
        return; /* a retry: everybody was told the first time */
    json_t *note = j->note;
    j->note = NULL;
    if (j->n_members)
        h->push_absent_ref(j->push_ref, j->channel_id, j->member_ids, j->member_name_ptrs,
                           j->n_members, "NOTIFY_MESSAGE", json_incref(note));
    h->send_channel(j->channel_id, j->conn, "NOTIFY_MESSAGE", note);
    h->count(j->mp->p, "messages_written", 1);
    if (j->push_ref)
        h->count(j->mp->p, "messages_push_intents", 1);
    hooks_stored(j, "message",
                 json_pack("{s:s, s:o}", "content", j->content, "replyTo",
                           j->reply_to ? json_integer(j->reply_to) : json_null()));
}

static void answer_edit(struct mjob *j)
{
    const chatd_host *h = j->mp->host;
    char at[32];
    util_time_rfc3339(j->edited_ms, at, sizeof at);
    h->reply(j->req, "EDIT_MESSAGE_ACK",
             json_pack("{s:o, s:I, s:s, s:I}", "channelId", util_channel_json(j->channel_id),
                       "messageSequence", (json_int_t)j->seq, "editedAt", at, "version",
                       (json_int_t)j->version));
    h->send_channel(j->channel_id, j->conn, "NOTIFY_MESSAGE_EDITED",
                    json_pack("{s:o, s:I, s:s, s:s, s:s, s:I}", "channelId",
                              util_channel_json(j->channel_id), "messageSequence",
                              (json_int_t)j->seq, "username", j->author, "content", j->content,
                              "editedAt", at, "version", (json_int_t)j->version));
    h->count(j->mp->p, "messages_edited", 1);
    hooks_stored(j, "edit", json_pack("{s:s}", "content", j->content));
}

static void answer_delete(struct mjob *j)
{
    const chatd_host *h = j->mp->host;
    h->reply(j->req, "DELETE_MESSAGE_ACK",
             json_pack("{s:o, s:I, s:I}", "channelId", util_channel_json(j->channel_id),
                       "messageSequence", (json_int_t)j->seq, "version", (json_int_t)j->version));
    if (!j->changed)
        return; /* deleted before: a retry */
    h->send_channel(j->channel_id, j->conn, "NOTIFY_MESSAGE_DELETED",
                    json_pack("{s:o, s:I, s:I}", "channelId", util_channel_json(j->channel_id),
                              "messageSequence", (json_int_t)j->seq, "version",
                              (json_int_t)j->version));
    h->count(j->mp->p, "messages_deleted", 1);
    hooks_stored(j, "delete", NULL);
}

static void answer_react(struct mjob *j)
{
    const chatd_host *h = j->mp->host;
    h->reply(j->req, "REACT_RESPONSE",
             json_pack("{s:o, s:I, s:s, s:b, s:I}", "channelId", util_channel_json(j->channel_id),
                       "messageSequence", (json_int_t)j->seq, "emoji", j->emoji, "on", j->on,
                       "version", (json_int_t)j->version));
    if (!j->changed)
        return; /* already so: nothing to tell */
    h->send_channel(j->channel_id, j->conn, "NOTIFY_REACTION",
                    json_pack("{s:o, s:I, s:s, s:s, s:b, s:I}", "channelId",
                              util_channel_json(j->channel_id), "messageSequence",
                              (json_int_t)j->seq, "username", j->me_name, "emoji", j->emoji, "on",
                              j->on, "version", (json_int_t)j->version));
    hooks_stored(j, "reaction", json_pack("{s:s, s:b}", "emoji", j->emoji, "on", j->on));
}

static void answer_read_ack(struct mjob *j)
{
    if (j->changed)
        receipts_read(j->mp->receipts, j->channel_id, j->head_count, j->me, j->me_name, j->conn,
                      j->seq);
    j->mp->host->req_done(j->req); /* READ_ACK has no answer */
}

static void answer_fetch(struct mjob *j)
{
    j->mp->host->reply(j->req, "FETCH_MESSAGES_RESPONSE",
                       json_pack("{s:o, s:O, s:b}", "channelId", util_channel_json(j->channel_id),
                                 "messages", j->list, "hasMore", j->has_more));
}

static void answer_sync(struct mjob *j)
{
    j->mp->host->reply(
        j->req, "SYNC_RESPONSE",
        json_pack("{s:o, s:I, s:O, s:b}", "channelId", util_channel_json(j->channel_id), "version",
                  (json_int_t)j->version, "messages", j->list, "hasMore", j->has_more));
}

static void answer_markers(struct mjob *j)
{
    j->mp->host->reply(
        j->req, "FETCH_READ_MARKERS_RESPONSE",
        json_pack("{s:o, s:O}", "channelId", util_channel_json(j->channel_id), "markers", j->list));
}

/* A member (checked) who types: the others are told. */
static void answer_typing(struct mjob *j)
{
    receipts_typing(j->mp->receipts, j->channel_id, j->me, j->me_name, j->conn);
    j->mp->host->req_done(j->req); /* TYPING has no answer */
}

/* ---- the requests ---- */

enum {
    OP_WRITE,
    OP_EDIT,
    OP_DELETE,
    OP_REACT,
    OP_READ_ACK,
    OP_FETCH,
    OP_SYNC,
    OP_MARKERS,
    OP_TYPING,
    N_OPS
};

static const struct mop ops[N_OPS] = {
    [OP_WRITE] = {"WRITE_MESSAGE", CHATD_JOB_WRITE, wire_parse_write, mstore_write, answer_write},
    [OP_EDIT] = {"EDIT_MESSAGE", CHATD_JOB_WRITE, wire_parse_edit, mstore_edit, answer_edit},
    [OP_DELETE] = {"DELETE_MESSAGE", CHATD_JOB_WRITE, wire_parse_delete, mstore_delete,
                   answer_delete},
    [OP_REACT] = {"REACT_REQUEST", CHATD_JOB_WRITE, wire_parse_react, mstore_react, answer_react},
    [OP_READ_ACK] = {"READ_ACK", CHATD_JOB_WRITE, wire_parse_read_ack, mstore_read_ack,
                     answer_read_ack},
    [OP_FETCH] = {"FETCH_MESSAGES_REQUEST", CHATD_JOB_READ, wire_parse_fetch, mstore_fetch,
                  answer_fetch},
    [OP_SYNC] = {"SYNC_REQUEST", CHATD_JOB_READ, wire_parse_sync, mstore_sync, answer_sync},
    [OP_MARKERS] = {"FETCH_READ_MARKERS_REQUEST", CHATD_JOB_READ, wire_parse_channel,
                    mstore_markers, answer_markers},
    [OP_TYPING] = {"TYPING", CHATD_JOB_READ, wire_parse_channel, mstore_check_member,
                   answer_typing},
};

/* TYPING from a WebSocket entered in the channel is a member's (ENTER
 * checked it, QUIT clears it): told at once, without a read. Too soon after
 * the last one told: dropped. */
static int typing_shortcut(struct mjob *j)
{
    const chatd_host *h = j->mp->host;
    if (!receipts_typing_due(j->mp->receipts, j->channel_id, j->me)) {
        h->req_done(j->req);
        return 1;
    }
    if (h->conn_channel(j->conn) != j->channel_id)
        return 0;
    answer_typing(j);
    return 1;
}

static int handle(struct mplug *mp, chatd_req *req, const json_t *msg, const struct mop *op)
{
    const chatd_host *h = mp->host;
    struct mjob *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    j->mp = mp;
    j->op = op;
    j->req = req;
    j->me = h->req_user_id(req);
    j->conn = h->req_conn_id(req);
    snprintf(j->me_name, sizeof j->me_name, "%s", h->req_username(req));
    chatd_error_code code = CHATD_ERR_BAD_REQUEST;
    const char *bad = op->parse(j, msg, &code);
    if (!bad && op == &ops[OP_WRITE] && !util_buckets_take(mp->writes, j->me, h->now_ms())) {
        h->count(mp->p, "writes_rate_limited", 1);
        bad = "too many messages; slow down (max_writes_per_second)";
        code = CHATD_ERR_RATE_LIMITED;
    }
    if (bad) {
        h->error(req, code, bad);
        messaging_job_free(j);
        return CHATD_OK;
    }
    if (op == &ops[OP_TYPING] && typing_shortcut(j)) {
        messaging_job_free(j);
        return CHATD_OK;
    }
    /* Other plugins' filters see writes and edits first. */
    if ((op == &ops[OP_WRITE] || op == &ops[OP_EDIT]) && h->filter_count() > 0) {
        if (hooks_filter(j, op->type) < 0) {
            messaging_job_free(j);
            return CHATD_ENOMEM;
        }
        return CHATD_PENDING;
    }
    messaging_submit(j);
    return CHATD_PENDING;
}

void messaging_submit(struct mjob *j)
{
    const chatd_host *h = j->mp->host;
    if (j->op == &ops[OP_WRITE])
        j->entered_version = mcache_all_entered(
            j->mp->members, j->channel_id, j->me, (size_t)j->mp->entered_check_max,
            CHATD_HOST_HAS(h, user_entered) ? h->user_entered : h->user_in_channel);
    /* One channel's writes commit in the order they came: a client's
     * messages keep the order it sent them in, with several writers too. */
    if (h->submit_keyed(j->mp->p, j->op->flags, (uint64_t)j->channel_id, j->op->run, done, j) < 0) {
        h->error(j->req, CHATD_ERR_INTERNAL, "cannot queue the request");
        messaging_job_free(j);
    }
}

#define HANDLER(fn, op)                                                                            \
    static int fn(chatd_req *req, const json_t *msg, void *state)                                  \
    {                                                                                              \
        return handle(state, req, msg, &ops[op]);                                                  \
    }
HANDLER(on_write, OP_WRITE)
HANDLER(on_edit, OP_EDIT)
HANDLER(on_delete, OP_DELETE)
HANDLER(on_react, OP_REACT)
HANDLER(on_read_ack, OP_READ_ACK)
HANDLER(on_fetch, OP_FETCH)
HANDLER(on_sync, OP_SYNC)
HANDLER(on_markers, OP_MARKERS)
HANDLER(on_typing, OP_TYPING)

static const chatd_msg_handler handlers[N_OPS] = {
    [OP_WRITE] = on_write, [OP_EDIT] = on_edit,         [OP_DELETE] = on_delete,
    [OP_REACT] = on_react, [OP_READ_ACK] = on_read_ack, [OP_FETCH] = on_fetch,
    [OP_SYNC] = on_sync,   [OP_MARKERS] = on_markers,   [OP_TYPING] = on_typing,
};

/* ---- the plugin ---- */

static void messaging_cleanup(void *state)
{
    struct mplug *mp = state;
    util_buckets_free(mp->writes);
    mcache_free(mp->members);
    receipts_free(mp->receipts);
    hooks_free(mp);
    free(mp);
}

static int read_settings(struct mplug *mp, const json_t *conf, int64_t *rate, int64_t *burst,
                         int64_t cache[3], struct receipt_limits *rl)
{
    const chatd_host *h = mp->host;
    chatd_plugin *p = mp->p;
    int64_t edit_window;
    if (util_setting_int(h, p, conf, messaging_settings, "max_content_bytes", &mp->max_content) <
            0 ||
        util_setting_int(h, p, conf, messaging_settings, "max_writes_per_second", rate) < 0 ||
        util_setting_int(h, p, conf, messaging_settings, "write_burst", burst) < 0 ||
        util_setting_int(h, p, conf, messaging_settings, "member_cache_channels", &cache[0]) < 0 ||
        util_setting_int(h, p, conf, messaging_settings, "member_cache_members", &cache[1]) < 0 ||
        util_setting_int(h, p, conf, messaging_settings, "member_cache_min_members", &cache[2]) <
            0 ||
        util_setting_int(h, p, conf, messaging_settings, "entered_check_max_members",
                         &mp->entered_check_max) < 0 ||
        util_setting_int(h, p, conf, messaging_settings, "edit_window", &edit_window) < 0 ||
        util_setting_int(h, p, conf, messaging_settings, "max_reactions_per_message",
                         &mp->max_reactions) < 0 ||
        util_setting_int(h, p, conf, messaging_settings, "read_notify_interval_ms", &rl->read_ms) <
            0 ||
        util_setting_int(h, p, conf, messaging_settings, "read_notify_channel_rate",
                         &rl->read_rate) < 0 ||
        util_setting_int(h, p, conf, messaging_settings, "typing_interval_ms", &rl->typing_ms) <
            0 ||
        util_setting_int(h, p, conf, messaging_settings, "typing_channel_rate", &rl->typing_rate) <
            0)
        return CHATD_EINVAL;
    mp->edit_window_ms = edit_window * 1000;
    return 0;
}

static int messaging_init(chatd_plugin *p, const chatd_host *host, const json_t *conf, void **state)
{
    if (util_need_sql(host, p) < 0)
        return CHATD_EINVAL;
    struct mplug *mp = calloc(1, sizeof *mp);
    if (!mp)
        return CHATD_ENOMEM;
    *state = mp;
    mp->p = p;
    mp->host = host;
    int64_t rate, burst, cache[3];
    struct receipt_limits rl;
    if (read_settings(mp, conf, &rate, &burst, cache, &rl) < 0)
        return CHATD_EINVAL;
    if (!(mp->members = mcache_new((size_t)cache[0], (size_t)cache[1], (size_t)cache[2])) ||
        !(mp->writes = util_buckets_new(host, rate, burst)) ||
        !(mp->receipts = receipts_new(mp, &rl)) || hooks_init(mp) < 0)
        return CHATD_ENOMEM;
    for (int i = 0; i < N_OPS; i++)
        if (host->on_message(p, ops[i].type, handlers[i]) < 0)
            return CHATD_EINVAL;
    int64_t batch = 0;
    if (util_setting_int(host, p, conf, messaging_settings, "batch_writes", &batch) < 0 ||
        (batch && CHATD_HOST_HAS(host, job_batch) &&
         (host->job_batch(p, mstore_write, mstore_write_batch) < 0 ||
          host->job_batch(p, mstore_read_ack, mstore_read_ack_batch) < 0)))
        return CHATD_EINVAL;
    return host->on_user_removing(p, mstore_remove_user);
}

static const chatd_plugin_desc messaging_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "messaging",          .version = "1.1",
    .init = messaging_init, .cleanup = messaging_cleanup, .settings = messaging_settings,
};

CHATD_PLUGIN(messaging_desc)
