/* The channel plugin's handlers: CREATE, FETCH_CHANNEL_INVITECODE, JOIN,
 * FETCH_CHANNELS_LIST, ENTER, LEAVE, QUIT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"

/* The settings of this plugin's config entry (checked by the core). */
static const chatd_setting channel_settings[] = {
    CHATD_STRING_SETTING("backend", NULL, util_sql_backends, "the SQL store of channels"),
    CHATD_INT_SETTING("max_channel_members", 10000, 2, 1000000,
                      "members per channel (CREATE and JOIN past it: LIMIT_EXCEEDED)"),
    CHATD_INT_SETTING("max_title_length", 100, 1, 400, "characters of a channel title"),
    CHATD_SETTINGS_END,
};

static void job_free(struct chjob *j)
{
    json_decref(j->list);
    free(j->people);
    free(j->title);
    free(j);
}

static const char *problem_of(struct chjob *j, int status, char *buf, size_t len)
{
    switch (status) {
    case CHATD_ENOTFOUND:
        if (j->op == OP_CREATE)
            snprintf(buf, len, "no user named '%s'", j->bad_name);
        else
            snprintf(buf, len,
                     j->op == OP_JOIN ? "no channel has this invite code" : "no such channel");
        return buf;
    case CHATD_EFORBIDDEN:
        if (j->is_direct)
            return j->op == OP_JOIN ? "a direct channel cannot be joined"
                                    : "a direct channel has no invite code";
        if (j->op == OP_CREATE)
            snprintf(buf, len, "'%s' is not an accepted connection of yours", j->bad_name);
        else
            snprintf(buf, len, "you are not a member of this channel");
        return buf;
    case CHATD_ECONFLICT:
        return "you are already a member of this channel";
    case CHATD_ELIMIT:
        return "the channel is full (max_channel_members)";
    case CHATD_EINVAL:
        return "you cannot name yourself as a participant";
    }
    return "failed";
}

static json_t *channel_ref(const struct chjob *j)
{
    return json_pack("{s:o, s:s}", "channelId", util_channel_json(j->channel_id), "title",
                     j->title ? j->title : "");
}

static void changed(struct chjob *j)
{
    chatd_event ev = {.type = CHATD_EVENT_CHANNEL_CHANGED, .channel_id = j->channel_id};
    j->cp->host->emit(j->cp->p, &ev);
}

static void done(void *arg, int status)
{
    struct chjob *j = arg;
    const chatd_host *h = j->cp->host;
    char buf[160];
    if (status < 0) {
        util_error_status(h, j->req, status, problem_of(j, status, buf, sizeof buf));
        job_free(j);
        return;
    }
    switch (j->op) {
    case OP_CREATE:
        h->reply(j->req, "CREATE_RESPONSE", channel_ref(j));
        if (!j->existing) {
            for (size_t i = 0; i < j->n_people; i++)
                h->notify_user_ref(j->people[i].push_ref, j->people[i].id, j->people[i].name,
                                   "NOTIFY_JOIN", channel_ref(j));
            changed(j);
        }
        break;
    case OP_FETCH_CODE:
        h->reply(j->req, "FETCH_CHANNEL_INVITECODE_RESPONSE",
                 json_pack("{s:o, s:s}", "channelId", util_channel_json(j->channel_id),
                           "inviteCode", j->code));
        break;
    case OP_JOIN:
        h->reply(j->req, "JOIN_RESPONSE", channel_ref(j));
        changed(j);
        break;
    case OP_LIST:
        h->reply(j->req, "FETCH_CHANNELS_LIST_RESPONSE", json_pack("{s:O}", "channels", j->list));
        break;
    case OP_ENTER:
        h->conn_enter(j->conn, j->channel_id);
        h->reply(j->req, "ENTER_RESPONSE",
                 json_pack("{s:o, s:s, s:I, s:I}", "channelId", util_channel_json(j->channel_id),
                           "title", j->title, "lastReadMessageSequence",
                           (json_int_t)j->info.last_read, "lastMessageSequence",
                           (json_int_t)j->info.last_seq));
        break;
    case OP_QUIT:
        h->user_leave_channel(j->me, j->channel_id);
        h->reply(j->req, "QUIT_RESPONSE",
                 json_pack("{s:o}", "channelId", util_channel_json(j->channel_id)));
        changed(j);
        break;
    }
    job_free(j);
}

static int add_person(struct chjob *j, const json_t *name)
{
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        json_string_length(name) >= UTIL_NAME_MAX)
        return CHATD_EINVAL;
    snprintf(j->people[j->n_people++].name, UTIL_NAME_MAX, "%s", json_string_value(name));
    return 0;
}

/* CREATE's fields: a title, and one participant or a list of them. */
static const char *parse_create(struct chjob *j, const json_t *msg)
{
    const json_t *title = json_object_get(msg, "title");
    const json_t *one = json_object_get(msg, "participantUsername");
    const json_t *many = json_object_get(msg, "participantUsernames");
    if (!json_is_string(title) || json_string_length(title) == 0 ||
        strlen(json_string_value(title)) != json_string_length(title) ||
        (int64_t)util_utf8_chars(json_string_value(title)) > j->cp->max_title)
        return "title must be 1 to max_title_length characters";
    if ((one != NULL) == (many != NULL))
        return "give either participantUsername or participantUsernames";
    size_t n = one ? 1 : json_array_size(many);
    if ((many && (!json_is_array(many) || n == 0)))
        return "participantUsernames must be a non-empty array of usernames";
    if ((int64_t)n > 2 * j->cp->max_members + 16)
        return NULL; /* far too many to be worth resolving: LIMIT_EXCEEDED below */
    if (!(j->people = calloc(n, sizeof *j->people)) ||
        !(j->title = strdup(json_string_value(title))))
        return "out of memory";
    j->direct = one != NULL;
    if (one)
        return add_person(j, one) < 0 ? "participantUsername must be a username" : NULL;
    for (size_t i = 0; i < n; i++)
        if (add_person(j, json_array_get(many, i)) < 0)
            return "participantUsernames must be a non-empty array of usernames";
    return NULL;
}

static int handle(struct chplug *cp, chatd_req *req, const json_t *msg, enum chop op,
                  chatd_job_run run)
{
    const chatd_host *h = cp->host;
    struct chjob *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    j->cp = cp;
    j->req = req;
    j->op = op;
    j->me = h->req_user_id(req);
    j->conn = h->req_conn_id(req);
    const char *bad = NULL;
    if (op == OP_CREATE) {
        bad = parse_create(j, msg);
        if (!bad && !j->people) {
            h->error(req, CHATD_ERR_LIMIT_EXCEEDED, "too many participants (max_channel_members)");
            job_free(j);
            return CHATD_OK;
        }
    } else if (op == OP_JOIN) {
        const json_t *code = json_object_get(msg, "inviteCode");
        if (!json_is_string(code) || json_string_length(code) == 0 ||
            json_string_length(code) >= sizeof j->code)
            bad = "inviteCode must be a non-empty string";
        else
            snprintf(j->code, sizeof j->code, "%s", json_string_value(code));
    } else if (op != OP_LIST &&
               util_channel_id(json_object_get(msg, "channelId"), &j->channel_id) < 0) {
        bad = "channelId must be a positive integer or {\"id\": positive integer}";
    }
    if (bad) {
        h->error(req, CHATD_ERR_BAD_REQUEST, bad);
        job_free(j);
        return CHATD_OK;
    }
    int flags =
        op == OP_LIST || op == OP_ENTER || op == OP_FETCH_CODE ? CHATD_JOB_READ : CHATD_JOB_WRITE;
    if (h->submit(cp->p, flags, run, done, j) < 0) {
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
HANDLER(on_create, OP_CREATE, chstore_create_notify)
HANDLER(on_fetch_code, OP_FETCH_CODE, chstore_fetch_code)
HANDLER(on_join, OP_JOIN, chstore_join)
HANDLER(on_list, OP_LIST, chstore_list)
HANDLER(on_enter, OP_ENTER, chstore_enter)
HANDLER(on_quit, OP_QUIT, chstore_quit)

/* LEAVE needs no storage: the active channel lives in presence. */
static int on_leave(chatd_req *req, const json_t *msg, void *state)
{
    struct chplug *cp = state;
    (void)msg;
    cp->host->conn_enter(cp->host->req_conn_id(req), 0);
    cp->host->reply(req, "LEAVE_RESPONSE", json_object());
    return CHATD_OK;
}

static void channel_cleanup(void *state)
{
    free(state);
}

static int channel_init(chatd_plugin *p, const chatd_host *host, const json_t *conf, void **state)
{
    if (util_need_sql(host, p) < 0)
        return CHATD_EINVAL;
    struct chplug *cp = calloc(1, sizeof *cp);
    if (!cp)
        return CHATD_ENOMEM;
    *state = cp;
    cp->p = p;
    cp->host = host;
    if (util_setting_int(host, p, conf, channel_settings, "max_channel_members", &cp->max_members) <
            0 ||
        util_setting_int(host, p, conf, channel_settings, "max_title_length", &cp->max_title) < 0)
        return CHATD_EINVAL;
    if (host->on_message(p, "CREATE_REQUEST", on_create) < 0 ||
        host->on_message(p, "FETCH_CHANNEL_INVITECODE_REQUEST", on_fetch_code) < 0 ||
        host->on_message(p, "JOIN_REQUEST", on_join) < 0 ||
        host->on_message(p, "FETCH_CHANNELS_LIST_REQUEST", on_list) < 0 ||
        host->on_message(p, "ENTER_REQUEST", on_enter) < 0 ||
        host->on_message(p, "LEAVE_REQUEST", on_leave) < 0 ||
        host->on_message(p, "QUIT_REQUEST", on_quit) < 0 ||
        host->on_user_removing(p, chstore_remove_user) < 0)
        return CHATD_EINVAL;
    return 0;
}

static const chatd_plugin_desc channel_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "channel",          .version = "1.0",
    .init = channel_init,   .cleanup = channel_cleanup, .settings = channel_settings,
};

CHATD_PLUGIN(channel_desc)
