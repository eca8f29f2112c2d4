/* The connection plugin's handlers: FETCH_CONNECTIONS, INVITE, ACCEPT,
 * REJECT, DISCONNECT, and the notifications they send. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"

/* The settings of this plugin's config entry (checked by the core). */
static const chatd_setting connection_settings[] = {
    CHATD_STRING_SETTING("backend", NULL, util_sql_backends, "the SQL store of connections"),
    CHATD_INT_SETTING("max_connections_per_user", 1000, 1, INT32_MAX,
                      "accepted connections per user; an ACCEPT past it is LIMIT_EXCEEDED"),
    CHATD_INT_SETTING("presence_grace", 5, 0, 3600,
                      "seconds a user may be gone before friends are told offline"),
    CHATD_SETTINGS_END,
};

static const char *const statuses[] = {"PENDING", "ACCEPTED", "REJECTED", "DISCONNECTED", NULL};

static void job_free(struct cjob *j)
{
    json_decref(j->list);
    free(j);
}

/* Copy a required string field into out; BAD_REQUEST-worthy when absent or too long. */
static int string_field(const json_t *msg, const char *key, char *out, size_t len)
{
    const json_t *v = json_object_get(msg, key);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= len)
        return CHATD_EINVAL;
    snprintf(out, len, "%s", json_string_value(v));
    return 0;
}

static const char *problem_of(enum cop op, int status)
{
    switch (status) {
    case CHATD_ENOTFOUND:
        return op == OP_INVITE ? "no user has this invite code" : "no such user or invitation";
    case CHATD_ECONFLICT:
        return op == OP_INVITE ? "you are already connected, invited or rejected"
                               : "the connection is not in a state that allows this";
    case CHATD_EFORBIDDEN:
        return op == OP_DISCONNECT ? "only the inviter can clear a rejection"
                                   : "only the invited user can answer an invitation";
    case CHATD_ELIMIT:
        return "connection limit reached";
    case CHATD_EINVAL:
        return "you cannot invite yourself";
    }
    return "failed";
}

static void done(void *arg, int status)
{
    struct cjob *j = arg;
    const chatd_host *h = j->cp->host;
    if (status < 0) {
        util_error_status(h, j->req, status, problem_of(j->op, status));
        job_free(j);
        return;
    }
    switch (j->op) {
    case OP_FETCH:
        h->reply(j->req, "FETCH_CONNECTIONS_RESPONSE", json_pack("{s:O}", "connections", j->list));
        break;
    case OP_INVITE:
        h->reply(j->req, "INVITE_RESPONSE",
                 json_pack("{s:s, s:s}", "userInviteCode", j->code, "status", "PENDING"));
        h->notify_user_ref(j->push_ref, j->other, j->other_name, "ASK_INVITE",
                           json_pack("{s:s}", "username", j->me_name));
        break;
    case OP_ACCEPT:
        h->reply(j->req, "ACCEPT_RESPONSE", json_pack("{s:s}", "username", j->other_name));
        h->notify_user_ref(j->push_ref, j->other, j->other_name, "NOTIFY_ACCEPT",
                           json_pack("{s:s}", "username", j->me_name));
        break;
    case OP_REJECT:
        h->reply(j->req, "REJECT_RESPONSE",
                 json_pack("{s:s, s:s}", "username", j->other_name, "status", "REJECTED"));
        break;
    case OP_DISCONNECT:
        h->reply(j->req, "DISCONNECT_RESPONSE",
                 json_pack("{s:s, s:s}", "username", j->other_name, "status", "DISCONNECTED"));
        break;
    }
    h->count(j->cp->p, "connection_requests", 1);
    job_free(j);
}

/* Parse msg for op into a job and submit it. */
static int handle(struct cplug *cp, chatd_req *req, const json_t *msg, enum cop op,
                  chatd_job_run run)
{
    const chatd_host *h = cp->host;
    struct cjob *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    j->cp = cp;
    j->req = req;
    j->op = op;
    j->me = h->req_user_id(req);
    snprintf(j->me_name, sizeof j->me_name, "%s", h->req_username(req));
    const char *bad = NULL;
    if (op == OP_FETCH) {
        const json_t *s = json_object_get(msg, "status");
        if (s && !json_is_null(s)) {
            int known = 0;
            for (int i = 0; statuses[i] && json_is_string(s); i++)
                known |= strcmp(statuses[i], json_string_value(s)) == 0;
            if (!known)
                bad = "status must be PENDING, ACCEPTED, REJECTED or DISCONNECTED";
            else
                snprintf(j->status, sizeof j->status, "%s", json_string_value(s));
        }
    } else if (op == OP_INVITE) {
        if (string_field(msg, "userInviteCode", j->code, sizeof j->code) < 0)
            bad = "userInviteCode must be a non-empty string";
    } else if (string_field(msg, "username", j->other_name, sizeof j->other_name) < 0) {
        bad = "username must be a non-empty string";
    }
    if (bad) {
        h->error(req, CHATD_ERR_BAD_REQUEST, bad);
        job_free(j);
        return CHATD_OK;
    }
    int flags = op == OP_FETCH ? CHATD_JOB_READ : CHATD_JOB_WRITE;
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
HANDLER(on_fetch, OP_FETCH, cstore_fetch)
HANDLER(on_invite, OP_INVITE, cstore_invite_notify)
HANDLER(on_accept, OP_ACCEPT, cstore_answer_notify)
HANDLER(on_reject, OP_REJECT, cstore_answer)
HANDLER(on_disconnect, OP_DISCONNECT, cstore_disconnect)

static void connection_cleanup(void *state)
{
    free(state);
}

static int connection_init(chatd_plugin *p, const chatd_host *host, const json_t *conf,
                           void **state)
{
    if (util_need_sql(host, p) < 0)
        return CHATD_EINVAL;
    struct cplug *cp = calloc(1, sizeof *cp);
    if (!cp)
        return CHATD_ENOMEM;
    *state = cp;
    cp->p = p;
    cp->host = host;
    int64_t grace;
    if (util_setting_int(host, p, conf, connection_settings, "max_connections_per_user",
                         &cp->max_per_user) < 0 ||
        util_setting_int(host, p, conf, connection_settings, "presence_grace", &grace) < 0 ||
        presence_init(cp, grace) < 0)
        return CHATD_EINVAL;
    if (host->on_message(p, "FETCH_CONNECTIONS_REQUEST", on_fetch) < 0 ||
        host->on_message(p, "INVITE_REQUEST", on_invite) < 0 ||
        host->on_message(p, "ACCEPT_REQUEST", on_accept) < 0 ||
        host->on_message(p, "REJECT_REQUEST", on_reject) < 0 ||
        host->on_message(p, "DISCONNECT_REQUEST", on_disconnect) < 0 ||
        host->on_user_removing(p, cstore_remove_user) < 0)
        return CHATD_EINVAL;
    return 0;
}

static const chatd_plugin_desc connection_desc = {
    CHATD_PLUGIN_DESC_HEAD,  .name = "connection",          .version = "1.0",
    .init = connection_init, .cleanup = connection_cleanup, .settings = connection_settings,
};

CHATD_PLUGIN(connection_desc)
