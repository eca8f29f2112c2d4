/*
 * Devices (PROTOCOL.md section 6): REGISTER_DEVICE_REQUEST and
 * UNREGISTER_DEVICE_REQUEST. A token belongs to one user at a time
 * (registering it again moves it, to the new user and session), a user holds
 * at most max_devices_per_user, and the session that registered a token takes
 * it away at its logout; a removed user's tokens go with the user (the
 * foreign key). The store keeps the token's SHA-256 as its key.
 */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"

#define TOKEN_MAX 4096

struct djob {
    struct pplug *pp;
    chatd_req *req;
    int64_t user_id;
    char platform[8];
    char *token;
    char hash[2 * SHA256_DIGEST_LENGTH + 1];
    char session[65];
    const char *problem;
};

static void djob_free(struct djob *j)
{
    free(j->token);
    free(j);
}

static void hash_token(const char *token, char out[2 * SHA256_DIGEST_LENGTH + 1])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

json_t *devices_of(const chatd_host *h, chatd_db *db, int64_t user_id)
{
    chatd_stmt *st = util_bind(h, db,
                               "SELECT platform, token FROM push_device WHERE user_id = ?"
                               " ORDER BY created_at, token_hash",
                               "i", user_id);
    json_t *list = json_array();
    int rc = st && list ? 0 : CHATD_EINTERNAL;
    while (rc == 0 && (rc = h->db_step(st)) == CHATD_ROW)
        rc = json_array_append_new(list, json_pack("{s:s, s:s}", "platform",
                                                   h->db_column_text(st, 0, NULL), "token",
                                                   h->db_column_text(st, 1, NULL))) == 0
                 ? 0
                 : CHATD_ENOMEM;
    if (st)
        h->db_reset(st);
    if (rc != CHATD_DONE) {
        json_decref(list);
        return NULL;
    }
    return list;
}

static int register_run(chatd_db *db, void *arg)
{
    struct djob *j = arg;
    const chatd_host *h = j->pp->host;
    int64_t held;
    /* The token moves here whoever held it: one row per token. */
    int rc = util_exec(h, db, "DELETE FROM push_device WHERE token_hash = ?", "s", j->hash);
    if (rc == 0)
        rc = util_int(h, db, &held, "SELECT COUNT(*) FROM push_device WHERE user_id = ?", "i",
                      j->user_id);
    if (rc < 0)
        return rc;
    if (held >= j->pp->set.max_devices) {
        j->problem = "too many devices for this user (max_devices_per_user)";
        return CHATD_ELIMIT;
    }
    return util_exec(h, db,
                     "INSERT INTO push_device (token_hash, token, platform, user_id, session_key,"
                     " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                     "sssisi", j->hash, j->token, j->platform, j->user_id, j->session, h->now_ms());
}

static int unregister_run(chatd_db *db, void *arg)
{
    struct djob *j = arg;
    const chatd_host *h = j->pp->host;
    int rc = util_exec(h, db, "DELETE FROM push_device WHERE token_hash = ? AND user_id = ?", "si",
                       j->hash, j->user_id);
    if (rc == 0 && h->db_changes(db) == 0) {
        j->problem = "no such device token of yours";
        return CHATD_ENOTFOUND;
    }
    return rc;
}

static void device_done(void *arg, int status)
{
    struct djob *j = arg;
    const chatd_host *h = j->pp->host;
    if (status < 0)
        util_error_status(h, j->req, status, j->problem ? j->problem : "failed");
    else if (j->platform[0])
        h->reply(j->req, "REGISTER_DEVICE_RESPONSE",
                 json_pack("{s:s, s:s}", "platform", j->platform, "token", j->token));
    else
        h->reply(j->req, "UNREGISTER_DEVICE_RESPONSE", json_pack("{s:s}", "token", j->token));
    djob_free(j);
}

/* token: 1 to 4096 bytes of text. NULL, or what is wrong. */
static const char *token_of(struct djob *j, const json_t *msg, chatd_error_code *code)
{
    const json_t *t = json_object_get(msg, "token");
    if (!json_is_string(t) || strlen(json_string_value(t)) != json_string_length(t))
        return "token must be a string";
    if (json_string_length(t) == 0)
        return "token must not be empty";
    if (json_string_length(t) > TOKEN_MAX) {
        *code = CHATD_ERR_LIMIT_EXCEEDED;
        return "token is longer than 4096 bytes";
    }
    if (!(j->token = strdup(json_string_value(t)))) {
        *code = CHATD_ERR_INTERNAL;
        return "out of memory";
    }
    hash_token(j->token, j->hash);
    return NULL;
}

static int handle(struct pplug *pp, chatd_req *req, const json_t *msg, int reg)
{
    const chatd_host *h = pp->host;
    struct djob *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    j->pp = pp;
    j->req = req;
    j->user_id = h->req_user_id(req);
    const char *session = h->req_session_key(req);
    snprintf(j->session, sizeof j->session, "%s", session ? session : "");
    chatd_error_code code = CHATD_ERR_BAD_REQUEST;
    const char *bad = token_of(j, msg, &code);
    if (!bad && reg) {
        const char *platform = json_string_value(json_object_get(msg, "platform"));
        if (!platform ||
            (strcmp(platform, "fcm") && strcmp(platform, "apns") && strcmp(platform, "web")))
            bad = "platform must be \"fcm\", \"apns\" or \"web\"";
        else
            snprintf(j->platform, sizeof j->platform, "%s", platform);
    }
    if (bad) {
        h->error(req, code, bad);
        djob_free(j);
        return CHATD_OK;
    }
    if (h->submit(pp->p, CHATD_JOB_WRITE, reg ? register_run : unregister_run, device_done, j) <
        0) {
        djob_free(j);
        return CHATD_EINTERNAL;
    }
    return CHATD_PENDING;
}

static int on_register(chatd_req *req, const json_t *msg, void *state)
{
    return handle(state, req, msg, 1);
}

static int on_unregister(chatd_req *req, const json_t *msg, void *state)
{
    return handle(state, req, msg, 0);
}

/* ---- the end of a session ---- */

struct sjob {
    const chatd_host *h;
    char session[65];
};

static int session_run(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    return util_exec(j->h, db, "DELETE FROM push_device WHERE session_key = ?", "s", j->session);
}

static void session_done(void *arg, int status)
{
    (void)status; /* a store that is down keeps the devices: they go with the user */
    free(arg);
}

static void on_session_ended(const chatd_event *ev, void *state)
{
    struct pplug *pp = state;
    struct sjob *j = ev->session_key ? calloc(1, sizeof *j) : NULL;
    if (!j)
        return;
    j->h = pp->host;
    snprintf(j->session, sizeof j->session, "%s", ev->session_key);
    if (pp->host->submit(pp->p, CHATD_JOB_WRITE, session_run, session_done, j) < 0)
        free(j);
}

int devices_init(struct pplug *pp)
{
    const chatd_host *h = pp->host;
    if (h->on_message(pp->p, "REGISTER_DEVICE_REQUEST", on_register) < 0 ||
        h->on_message(pp->p, "UNREGISTER_DEVICE_REQUEST", on_unregister) < 0 ||
        h->on_event(pp->p, CHATD_EVENT_SESSION_ENDED, on_session_ended) < 0)
        return CHATD_EINVAL;
    return 0;
}
