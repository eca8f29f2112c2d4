/*
 * echobot: a chat user run by a plugin. In every channel it is a member of,
 * a message "/echo some text" gets the answer "some text" from it, as a reply
 * to that message. It accepts every friend invitation, so that anyone can add
 * it to a group. The user is an ordinary one (register it, its password
 * unused); the plugin finds it by name in the store, or as it registers.
 *
 * What it shows: the after-commit event (CHATD_EVENT_MESSAGE_STORED) to hear
 * the channels, and request_as() to act as a user through the plugins that
 * handle the messages, with every check they make (membership, limits).
 *
 *   make                      # uses pkg-config chatd-plugin
 *   plugins = ( ..., { name = "echobot"; path = "/path/to/echobot.so";
 *                      store = "sqlite"; username = "echobot"; } );
 */
#include <chatd/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COMMAND "/echo "

struct echobot {
    chatd_plugin *p;
    const chatd_host *host;
    char username[64]; /* as configured */
    int64_t user_id;   /* 0 until the user is known */
};

/* The store job that looks the user up: its own memory, not the plugin's
 * state, because run() is on a worker thread. */
struct lookup {
    struct echobot *eb;
    char username[64]; /* in: the name asked; out: as stored */
    int64_t user_id;   /* out: 0 when there is no such user */
};

static void become(struct echobot *eb, int64_t user_id, const char *username)
{
    eb->user_id = user_id;
    snprintf(eb->username, sizeof eb->username, "%s", username);
    eb->host->log(eb->p, CHATD_LOG_INFO, "answering as %s (user %lld)", eb->username,
                  (long long)user_id);
}

static int lookup_run(chatd_db *db, void *arg) /* worker thread */
{
    struct lookup *l = arg;
    const chatd_host *h = l->eb->host;
    chatd_stmt *st = h->db_prepare(db, "SELECT id, username FROM message_user WHERE username = ?");
    if (!st)
        return CHATD_EINTERNAL;
    h->db_bind_text(st, 1, l->username, strlen(l->username));
    int rc = h->db_step(st);
    l->user_id = 0;
    if (rc == CHATD_ROW) {
        l->user_id = h->db_column_int(st, 0);
        snprintf(l->username, sizeof l->username, "%s", h->db_column_text(st, 1, NULL));
    }
    return rc < 0 ? rc : 0;
}

static void lookup_done(void *arg, int status) /* loop thread */
{
    struct lookup *l = arg;
    struct echobot *eb = l->eb;
    if (status == 0 && l->user_id > 0 && eb->user_id == 0)
        become(eb, l->user_id, l->username);
    else if (eb->user_id == 0)
        eb->host->log(eb->p, CHATD_LOG_WARN,
                      "no user %s yet: register it (POST /api/v1/auth/register) to wake the bot",
                      eb->username);
    free(l);
}

/* What the plugin that handled our request answered (or NULL: no answer). */
static void on_answer(void *arg, const json_t *reply)
{
    struct echobot *eb = arg;
    const char *type = json_string_value(json_object_get(reply, "type"));
    if (type && strcmp(type, "ERROR") == 0)
        eb->host->log(eb->p, CHATD_LOG_DEBUG, "%s refused: %s %s",
                      json_string_value(json_object_get(reply, "messageType")),
                      json_string_value(json_object_get(reply, "code")),
                      json_string_value(json_object_get(reply, "message")));
}

/* Send msg (taken) as the bot. */
static void act(struct echobot *eb, json_t *msg)
{
    if (msg && eb->host->request_as(eb->user_id, eb->username, msg, on_answer, eb) < 0)
        eb->host->log(eb->p, CHATD_LOG_ERROR, "no plugin handles %s",
                      json_string_value(json_object_get(msg, "type")));
    json_decref(msg);
}

/* Every committed change of every channel: answer the new "/echo" messages.
 * A channel the bot is no member of refuses its answer (FORBIDDEN): that is
 * how "only where it is a member" is kept, by the messaging plugin's check. */
static void on_stored(const chatd_event *ev, void *state)
{
    struct echobot *eb = state;
    const char *kind = json_string_value(json_object_get(ev->body, "kind"));
    const char *content = json_string_value(json_object_get(ev->body, "content"));
    if (!eb->user_id || ev->user_id == eb->user_id || !kind || strcmp(kind, "message") != 0 ||
        !content || strncmp(content, COMMAND, strlen(COMMAND)) != 0)
        return;
    const char *text = content + strlen(COMMAND);
    if (!*text)
        return;
    act(eb, json_pack("{s:s, s:I, s:s, s:O}", "type", "WRITE_MESSAGE", "channelId",
                      (json_int_t)ev->channel_id, "content", text, "replyTo",
                      json_object_get(ev->body, "messageSequence")));
}

/* Notifications the bot's user cannot see (it has no WebSocket): accept the
 * friend invitations among them. */
static void on_undeliverable(const chatd_event *ev, void *state)
{
    struct echobot *eb = state;
    const char *type = json_string_value(json_object_get(ev->body, "type"));
    const char *inviter = json_string_value(json_object_get(ev->body, "username"));
    if (eb->user_id && ev->user_id == eb->user_id && type && strcmp(type, "ASK_INVITE") == 0 &&
        inviter)
        act(eb, json_pack("{s:s, s:s}", "type", "ACCEPT_REQUEST", "username", inviter));
}

static void on_registered(const chatd_event *ev, void *state)
{
    struct echobot *eb = state;
    if (!eb->user_id && ev->username && strcasecmp(ev->username, eb->username) == 0)
        become(eb, ev->user_id, ev->username);
}

static void on_removed(const chatd_event *ev, void *state)
{
    struct echobot *eb = state;
    if (ev->user_id == eb->user_id) {
        eb->user_id = 0;
        eb->host->log(eb->p, CHATD_LOG_WARN, "user %s was removed: the bot sleeps", eb->username);
    }
}

static int echobot_init(chatd_plugin *p, const chatd_host *host, const json_t *config, void **state)
{
    if (!CHATD_HOST_HAS(host, request_as)) {
        host->log(p, CHATD_LOG_ERROR, "this chatd has no request_as (ABI 1.1 needed)");
        return CHATD_EINVAL;
    }
    if (!host->backend_name(p)) {
        host->log(p, CHATD_LOG_ERROR, "setting 'store' is required: where the users are");
        return CHATD_EINVAL;
    }
    struct echobot *eb = calloc(1, sizeof *eb);
    struct lookup *l = calloc(1, sizeof *l);
    if (!eb || !l) {
        free(eb);
        free(l);
        return CHATD_ENOMEM;
    }
    *state = eb;
    eb->p = p;
    eb->host = host;
    const char *username = json_string_value(json_object_get(config, "username"));
    snprintf(eb->username, sizeof eb->username, "%s", username ? username : "echobot");
    l->eb = eb;
    memcpy(l->username, eb->username, sizeof l->username);
    if (host->on_event(p, CHATD_EVENT_MESSAGE_STORED, on_stored) < 0 ||
        host->on_event(p, CHATD_EVENT_UNDELIVERABLE, on_undeliverable) < 0 ||
        host->on_event(p, CHATD_EVENT_USER_REGISTERED, on_registered) < 0 ||
        host->on_event(p, CHATD_EVENT_USER_REMOVED, on_removed) < 0 ||
        host->submit(p, CHATD_JOB_READ, lookup_run, lookup_done, l) < 0) {
        free(l);
        return CHATD_EINVAL;
    }
    return 0;
}

static void echobot_cleanup(void *state)
{
    free(state);
}

static const chatd_setting echobot_settings[] = {
    CHATD_STRING_SETTING("username", "echobot", NULL, "the user the bot answers as"),
    CHATD_SETTINGS_END,
};

static const chatd_plugin_desc echobot_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "echobot",          .version = "1.0",
    .init = echobot_init,   .cleanup = echobot_cleanup, .settings = echobot_settings,
};

CHATD_PLUGIN(echobot_desc)
