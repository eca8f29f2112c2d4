#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An optional integer field in lo..hi: 0 when absent (or null), 1 when read
 * into *out, CHATD_EINVAL when bad. */
static int opt_int(const json_t *msg, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const json_t *v = json_object_get(msg, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return CHATD_EINVAL;
    *out = json_integer_value(v);
    return 1;
}

static const char *channel_of(struct mjob *j, const json_t *msg)
{
    if (util_channel_id(json_object_get(msg, "channelId"), &j->channel_id) < 0)
        return "channelId must be a positive integer or {\"id\": positive integer}";
    return NULL;
}

static const char *sequence_of(struct mjob *j, const json_t *msg)
{
    const char *bad = channel_of(j, msg);
    if (bad)
        return bad;
    if (opt_int(msg, "messageSequence", 1, INT64_MAX, &j->seq) != 1)
        return "messageSequence must be a positive integer";
    return NULL;
}

/* A message's content, by the rules of content: into j->content. */
static const char *content_of(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    const json_t *content = json_object_get(msg, "content");
    if (!json_is_string(content) ||
        strlen(json_string_value(content)) != json_string_length(content))
        return "content must be a string";
    if (json_string_length(content) == 0)
        return "content must not be empty";
    if ((int64_t)json_string_length(content) > j->mp->max_content) {
        *code = CHATD_ERR_LIMIT_EXCEEDED;
        return "content is longer than max_content_bytes";
    }
    if (!(j->content = strdup(json_string_value(content)))) {
        *code = CHATD_ERR_INTERNAL;
        return "out of memory";
    }
    return NULL;
}

const char *wire_parse_write(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    /* Without channelId (the original platform's shape): the WebSocket's
     * entered channel. */
    if (!json_object_get(msg, "channelId")) {
        if (!(j->channel_id = j->mp->host->conn_channel(j->conn)))
            return "channelId is missing and this WebSocket has entered no channel";
    } else {
        const char *bad = channel_of(j, msg);
        if (bad)
            return bad;
    }
    const json_t *cid = json_object_get(msg, "clientMessageId");
    if (cid && !json_is_null(cid)) {
        if (!json_is_string(cid) || json_string_length(cid) > CLIENT_ID_MAX ||
            strlen(json_string_value(cid)) != json_string_length(cid))
            return "clientMessageId must be a string of at most 64 bytes";
        snprintf(j->client_id, sizeof j->client_id, "%s", json_string_value(cid));
        j->has_client_id = 1;
    }
    if (opt_int(msg, "replyTo", 1, INT64_MAX, &j->reply_to) < 0)
        return "replyTo must be a positive integer (a messageSequence) or null";
    return content_of(j, msg, code);
}

const char *wire_parse_edit(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    const char *bad = sequence_of(j, msg);
    return bad ? bad : content_of(j, msg, code);
}

const char *wire_parse_delete(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    (void)code;
    return sequence_of(j, msg);
}

const char *wire_parse_react(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    (void)code;
    const char *bad = sequence_of(j, msg);
    if (bad)
        return bad;
    const json_t *emoji = json_object_get(msg, "emoji");
    const json_t *on = json_object_get(msg, "on");
    if (!json_is_string(emoji) || json_string_length(emoji) == 0 ||
        json_string_length(emoji) > EMOJI_MAX ||
        strlen(json_string_value(emoji)) != json_string_length(emoji))
        return "emoji must be a string of 1 to 32 bytes";
    if (!json_is_boolean(on))
        return "on must be true or false";
    snprintf(j->emoji, sizeof j->emoji, "%s", json_string_value(emoji));
    j->on = json_is_true(on);
    return NULL;
}

const char *wire_parse_read_ack(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    (void)code;
    const char *bad = channel_of(j, msg);
    if (bad)
        return bad;
    if (opt_int(msg, "messageSequence", 0, INT64_MAX, &j->seq) != 1)
        return "messageSequence must be a non-negative integer";
    return NULL;
}

static const char *limit_of(struct mjob *j, const json_t *msg)
{
    j->limit = FETCH_DEFAULT;
    if (opt_int(msg, "limit", 1, FETCH_MAX, &j->limit) < 0)
        return "limit must be an integer from 1 to 200";
    return NULL;
}

const char *wire_parse_fetch(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    (void)code;
    const char *bad = channel_of(j, msg);
    if (bad || (bad = limit_of(j, msg)))
        return bad;
    int before = opt_int(msg, "beforeSequence", 1, INT64_MAX, &j->before);
    int after = opt_int(msg, "afterSequence", 0, INT64_MAX, &j->after);
    if (before < 0)
        return "beforeSequence must be a positive integer";
    if (after < 0)
        return "afterSequence must be a non-negative integer";
    if (before && after)
        return "give beforeSequence or afterSequence, not both";
    if (!after)
        j->after = -1; /* the newest page, or the page before beforeSequence */
    if (!before)
        j->before = INT64_MAX;
    return NULL;
}

const char *wire_parse_sync(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    (void)code;
    const char *bad = channel_of(j, msg);
    if (bad || (bad = limit_of(j, msg)))
        return bad;
    if (opt_int(msg, "sinceVersion", 0, INT64_MAX, &j->since) != 1)
        return "sinceVersion must be a non-negative integer";
    return NULL;
}

const char *wire_parse_channel(struct mjob *j, const json_t *msg, chatd_error_code *code)
{
    (void)code;
    return channel_of(j, msg);
}

json_t *wire_message(int64_t seq, const char *username, const char *content, int64_t created_ms,
                     int64_t version, int64_t edited_ms, int deleted, int64_t reply_to)
{
    char at[32], edited[32];
    util_time_rfc3339(created_ms, at, sizeof at);
    if (edited_ms)
        util_time_rfc3339(edited_ms, edited, sizeof edited);
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:o, s:b, s:o, s:[]}", "messageSequence",
                     (json_int_t)seq, "username", username ? username : "", "content",
                     deleted || !content ? "" : content, "createdAt", at, "version",
                     (json_int_t)version, "editedAt", edited_ms ? json_string(edited) : json_null(),
                     "deleted", deleted, "replyTo", reply_to ? json_integer(reply_to) : json_null(),
                     "reactions");
}

void wire_add_reaction(json_t *message, const char *emoji, int64_t count, int me)
{
    json_array_append_new(
        json_object_get(message, "reactions"),
        json_pack("{s:s, s:I, s:b}", "emoji", emoji, "count", (json_int_t)count, "me", me));
}

json_t *wire_notify_message(const struct mjob *j)
{
    char at[32];
    util_time_rfc3339(j->created_ms, at, sizeof at);
    return json_pack("{s:o, s:I, s:s, s:s, s:s, s:o, s:I}", "channelId",
                     util_channel_json(j->channel_id), "messageSequence", (json_int_t)j->seq,
                     "username", j->me_name, "content", j->content, "createdAt", at, "replyTo",
                     j->reply_to ? json_integer(j->reply_to) : json_null(), "version",
                     (json_int_t)j->version);
}
