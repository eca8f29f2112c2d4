/* The messaging plugin's handlers: WRITE_MESSAGE, FETCH_MESSAGES, READ_ACK. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging.h"

#define FETCH_DEFAULT 50
#define FETCH_MAX 200

static void job_free(struct mjob *j)
{
    free(j->content);
    mcache_release(j->mp->members, j->members);
    free(j->member_ids);
    free(j->member_name_ptrs);
    json_decref(j->list);
    free(j);
}

static const char *problem_of(int status)
{
    switch (status) {
    case CHATD_ENOTFOUND:
        return "no such channel";
    case CHATD_EFORBIDDEN:
        return "you are not a member of this channel";
    }
    return "failed";
}

/* After the commit: the ack, then live delivery, then push for the rest. */
static void deliver(struct mjob *j)
{
    const chatd_host *h = j->mp->host;
    char at[32];
    util_time_rfc3339(j->created_ms, at, sizeof at);
    h->reply(j->req, "WRITE_MESSAGE_ACK",
             json_pack("{s:o, s:I, s:o, s:s}", "channelId", util_channel_json(j->channel_id),
                       "messageSequence", (json_int_t)j->seq, "clientMessageId",
                       j->has_client_id ? json_string(j->client_id) : json_null(), "createdAt",
                       at));
    if (j->duplicate)
        return; /* a retry: everybody was told the first time */
    json_t *note =
        json_pack("{s:o, s:I, s:s, s:s, s:s}", "channelId", util_channel_json(j->channel_id),
                  "messageSequence", (json_int_t)j->seq, "username", j->me_name, "content",
                  j->content, "createdAt", at);
    if (!note)
        return;
    if (j->n_members)
        h->push_absent(j->channel_id, j->member_ids, j->member_name_ptrs, j->n_members,
                       "NOTIFY_MESSAGE", json_incref(note));
    h->send_channel(j->channel_id, j->conn, "NOTIFY_MESSAGE", note);
    h->count(j->mp->p, "messages_written", 1);
}

static void done(void *arg, int status)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    if (status < 0)
        util_error_status(h, j->req, status, problem_of(status));
    else if (j->op == OP_WRITE)
        deliver(j);
    else if (j->op == OP_FETCH)
        h->reply(j->req, "FETCH_MESSAGES_RESPONSE",
                 json_pack("{s:o, s:O}", "channelId", util_channel_json(j->channel_id), "messages",
                           j->list));
    else
        h->req_done(j->req); /* READ_ACK has no answer */
    job_free(j);
}

/* An optional positive integer field: 0 when absent, CHATD_EINVAL when bad. */
static int opt_int(const json_t *msg, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const json_t *v = json_object_get(msg, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return CHATD_EINVAL;
    *out = json_integer_value(v);
    return 0;
}

/* Parse a request into j; returns NULL or the BAD_REQUEST text (LIMIT_EXCEEDED
 * is signalled by *limit). */
static const char *parse(struct mjob *j, const json_t *msg, int *limit)
{
    if (util_channel_id(json_object_get(msg, "channelId"), &j->channel_id) < 0)
        return "channelId must be a positive integer or {\"id\": positive integer}";
    if (j->op == OP_FETCH) {
        j->seq = INT64_MAX;
        j->limit = FETCH_DEFAULT;
        if (opt_int(msg, "beforeSequence", 1, INT64_MAX, &j->seq) < 0)
            return "beforeSequence must be a positive integer";
        if (opt_int(msg, "limit", 1, FETCH_MAX, &j->limit) < 0)
            return "limit must be an integer from 1 to 200";
        return NULL;
    }
    if (j->op == OP_READ_ACK) {
        const json_t *v = json_object_get(msg, "messageSequence");
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return "messageSequence must be a non-negative integer";
        j->seq = json_integer_value(v);
        return NULL;
    }
    const json_t *content = json_object_get(msg, "content");
    const json_t *cid = json_object_get(msg, "clientMessageId");
    if (!json_is_string(content) ||
        strlen(json_string_value(content)) != json_string_length(content))
        return "content must be a string";
    if (json_string_length(content) == 0)
        return "content must not be empty";
    if ((int64_t)json_string_length(content) > j->mp->max_content) {
        *limit = 1;
        return "content is longer than max_content_bytes";
    }
    if (cid && !json_is_null(cid)) {
        if (!json_is_string(cid) || json_string_length(cid) > CLIENT_ID_MAX ||
            strlen(json_string_value(cid)) != json_string_length(cid))
            return "clientMessageId must be a string of at most 64 bytes";
        snprintf(j->client_id, sizeof j->client_id, "%s", json_string_value(cid));
        j->has_client_id = 1;
    }
    if (!(j->content = strdup(json_string_value(content))))
        return "out of memory";
    return NULL;
}

static int handle(struct mplug *mp, chatd_req *req, const json_t *msg, enum mop op,
                  chatd_job_run run)
{
    const chatd_host *h = mp->host;
    struct mjob *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    j->mp = mp;
    j->req = req;
    j->op = op;
    j->me = h->req_user_id(req);
    j->conn = h->req_conn_id(req);
    snprintf(j->me_name, sizeof j->me_name, "%s", h->req_username(req));
    int limit = 0;
    const char *bad = parse(j, msg, &limit);
    if (!bad && op == OP_WRITE && !util_buckets_take(mp->writes, j->me, h->now_ms())) {
        h->count(mp->p, "writes_rate_limited", 1);
        h->error(req, CHATD_ERR_RATE_LIMITED,
                 "too many messages; slow down (max_writes_per_second)");
        job_free(j);
        return CHATD_OK;
    }
    if (bad) {
        h->error(req, limit ? CHATD_ERR_LIMIT_EXCEEDED : CHATD_ERR_BAD_REQUEST, bad);
        job_free(j);
        return CHATD_OK;
    }
    if (h->submit(mp->p, op == OP_FETCH ? CHATD_JOB_READ : CHATD_JOB_WRITE, run, done, j) < 0) {
        job_free(j);
        return CHATD_EINTERNAL;
    }
    return CHATD_PENDING;
}

#define HANDLER(fn, op, run)                                                                       \
    static int fn(chatd_req *req, const json_t *msg, void *state)                                  \
    {                                                                                              \
        return handle(state, req, msg, op, run);                                                   \
    }
HANDLER(on_write, OP_WRITE, mstore_write)
HANDLER(on_fetch, OP_FETCH, mstore_fetch)
HANDLER(on_read_ack, OP_READ_ACK, mstore_read_ack)

static void messaging_cleanup(void *state)
{
    struct mplug *mp = state;
    util_buckets_free(mp->writes);
    mcache_free(mp->members);
    free(mp);
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
    int64_t rate, burst, slots, cache_max, cache_min;
    if (util_conf_int(host, p, conf, "max_content_bytes", 4096, 1, 1 << 24, &mp->max_content) < 0 ||
        util_conf_int(host, p, conf, "max_writes_per_second", 500, 1, 10000000, &rate) < 0 ||
        util_conf_int(host, p, conf, "write_burst", 5000, 1, 10000000, &burst) < 0 ||
        util_conf_int(host, p, conf, "member_cache_channels", 4096, 0, 1 << 20, &slots) < 0 ||
        util_conf_int(host, p, conf, "member_cache_members", 200000, 0, 100000000, &cache_max) <
            0 ||
        util_conf_int(host, p, conf, "member_cache_min_members", 1, 1, 100000000, &cache_min) < 0)
        return CHATD_EINVAL;
    if (!(mp->members = mcache_new((size_t)slots, (size_t)cache_max, (size_t)cache_min)))
        return CHATD_ENOMEM;
    if (!(mp->writes = util_buckets_new(host, rate, burst)))
        return CHATD_ENOMEM;
    if (host->on_message(p, "WRITE_MESSAGE", on_write) < 0 ||
        host->on_message(p, "FETCH_MESSAGES_REQUEST", on_fetch) < 0 ||
        host->on_message(p, "READ_ACK", on_read_ack) < 0 ||
        host->on_user_removing(p, mstore_remove_user) < 0)
        return CHATD_EINVAL;
    return 0;
}

static const chatd_plugin_desc messaging_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "messaging",          .version = "1.0",
    .init = messaging_init, .cleanup = messaging_cleanup,
};

CHATD_PLUGIN(messaging_desc)
