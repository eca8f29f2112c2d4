/*
 * Friends' presence (PROTOCOL.md section 5.5): a user's ACCEPTED connections
 * that have a WebSocket are told NOTIFY_PRESENCE when the user comes online
 * or goes offline (the core tells this plugin once per change, cluster-wide,
 * after plugins.connection.presence_grace), and FETCH_PRESENCE answers for
 * every friend. lastSeen is kept in message_user.last_seen.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"

struct friend
{
    int64_t id;
    char name[UTIL_NAME_MAX];
    int64_t last_seen; /* ms, 0: never */
};

struct pjob {
    struct cplug *cp;
    chatd_req *req; /* FETCH_PRESENCE; NULL for an event */
    int64_t user_id;
    int online;      /* the event's */
    int64_t time_ms; /* USER_OFFLINE: when */
    char name[UTIL_NAME_MAX];
    struct friend *friends;
    size_t n, cap;
};

static void pjob_free(struct pjob *j)
{
    free(j->friends);
    free(j);
}

/* The user's name and ACCEPTED friends (worker thread). */
static int load_friends(struct pjob *j, chatd_db *db)
{
    const chatd_host *h = j->cp->host;
    chatd_stmt *st =
        util_bind(h, db, "SELECT username FROM message_user WHERE id = ?", "i", j->user_id);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW)
        snprintf(j->name, sizeof j->name, "%s", h->db_column_text(st, 0, NULL));
    h->db_reset(st);
    if (rc != CHATD_ROW)
        return rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
    st = util_bind(h, db,
                   "SELECT u.id, u.username, u.last_seen FROM user_connection c"
                   " JOIN message_user u ON u.id = CASE WHEN c.user_a_id = ? THEN c.user_b_id"
                   "                                    ELSE c.user_a_id END"
                   " WHERE (c.user_a_id = ? OR c.user_b_id = ?) AND c.status = 'ACCEPTED'"
                   " ORDER BY u.username",
                   "iii", j->user_id, j->user_id, j->user_id);
    if (!st)
        return CHATD_EINTERNAL;
    j->n = 0; /* a retried run starts over */
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        if (j->n == j->cap) {
            size_t cap = j->cap ? 2 * j->cap : 16;
            struct friend *f = realloc(j->friends, cap * sizeof *f);
            if (!f) {
                rc = CHATD_ENOMEM;
                break;
            }
            j->friends = f;
            j->cap = cap;
        }
        struct friend *f = &j->friends[j->n++];
        f->id = h->db_column_int(st, 0);
        snprintf(f->name, sizeof f->name, "%s", h->db_column_text(st, 1, NULL));
        f->last_seen = h->db_column_is_null(st, 2) ? 0 : h->db_column_int(st, 2);
    }
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

static int run_online(chatd_db *db, void *arg)
{
    return load_friends(arg, db);
}

static int run_offline(chatd_db *db, void *arg)
{
    struct pjob *j = arg;
    int rc = util_exec(j->cp->host, db, "UPDATE message_user SET last_seen = ? WHERE id = ?", "ii",
                       j->time_ms, j->user_id);
    return rc < 0 ? rc : load_friends(j, db);
}

static json_t *last_seen_json(int64_t ms)
{
    char at[32];
    if (!ms)
        return json_null();
    util_time_rfc3339(ms, at, sizeof at);
    return json_string(at);
}

/* Every friend's WebSockets, on every node, are told. */
static void told(void *arg, int status)
{
    struct pjob *j = arg;
    const chatd_host *h = j->cp->host;
    if (status < 0) {
        h->log(j->cp->p, CHATD_LOG_WARN, "presence of user %lld not told (%d)",
               (long long)j->user_id, status);
        pjob_free(j);
        return;
    }
    for (size_t i = 0; i < j->n; i++)
        h->send_user(j->friends[i].id, "NOTIFY_PRESENCE",
                     json_pack("{s:s, s:b, s:o}", "username", j->name, "online", j->online,
                               "lastSeen", j->online ? json_null() : last_seen_json(j->time_ms)));
    h->count(j->cp->p, "presence_changes", 1);
    pjob_free(j);
}

static void on_presence(const chatd_event *ev, void *state)
{
    struct cplug *cp = state;
    struct pjob *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->cp = cp;
    j->user_id = ev->user_id;
    j->online = ev->type == CHATD_EVENT_USER_ONLINE;
    j->time_ms = ev->time_ms ? ev->time_ms : cp->host->now_ms();
    if (cp->host->submit(cp->p, j->online ? CHATD_JOB_READ : CHATD_JOB_WRITE,
                         j->online ? run_online : run_offline, told, j) < 0)
        pjob_free(j);
}

/* ---- FETCH_PRESENCE ---- */

static void answer(void *arg, const unsigned char *online)
{
    struct pjob *j = arg;
    const chatd_host *h = j->cp->host;
    if (!online) {
        h->error(j->req, CHATD_ERR_UNAVAILABLE, "presence unavailable, retry later");
        pjob_free(j);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < j->n; i++)
        json_array_append_new(
            list, json_pack("{s:s, s:b, s:o}", "username", j->friends[i].name, "online", online[i],
                            "lastSeen",
                            online[i] ? json_null() : last_seen_json(j->friends[i].last_seen)));
    h->reply(j->req, "FETCH_PRESENCE_RESPONSE", json_pack("{s:o}", "friends", list));
    pjob_free(j);
}

static void friends_loaded(void *arg, int status)
{
    struct pjob *j = arg;
    const chatd_host *h = j->cp->host;
    int64_t *ids = status < 0 ? NULL : malloc((j->n + 1) * sizeof *ids);
    if (!ids) {
        util_error_status(h, j->req, status < 0 ? status : CHATD_ENOMEM, "failed");
        pjob_free(j);
        return;
    }
    for (size_t i = 0; i < j->n; i++)
        ids[i] = j->friends[i].id;
    int rc = h->presence_of(ids, j->n, answer, j);
    free(ids);
    if (rc < 0) {
        util_error_status(h, j->req, rc, "failed");
        pjob_free(j);
    }
}

static int on_fetch_presence(chatd_req *req, const json_t *msg, void *state)
{
    struct cplug *cp = state;
    (void)msg;
    struct pjob *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    j->cp = cp;
    j->req = req;
    j->user_id = cp->host->req_user_id(req);
    if (cp->host->submit(cp->p, CHATD_JOB_READ, run_online, friends_loaded, j) < 0) {
        pjob_free(j);
        return CHATD_EINTERNAL;
    }
    return CHATD_PENDING;
}

int presence_init(struct cplug *cp, int64_t grace_s)
{
    const chatd_host *h = cp->host;
    if (!CHATD_HOST_HAS(h, presence_of)) {
        h->log(cp->p, CHATD_LOG_ERROR, "this chatd is older than the plugin (ABI 1.1 needed)");
        return CHATD_EINVAL;
    }
    if (h->watch_presence(cp->p, grace_s * 1000) < 0 ||
        h->on_event(cp->p, CHATD_EVENT_USER_ONLINE, on_presence) < 0 ||
        h->on_event(cp->p, CHATD_EVENT_USER_OFFLINE, on_presence) < 0 ||
        h->on_message(cp->p, "FETCH_PRESENCE_REQUEST", on_fetch_presence) < 0)
        return CHATD_EINVAL;
    return 0;
}
