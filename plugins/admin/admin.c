/* The admin plugin's routes: users (list, ban, unban, logout), channel
 * deletion and the stats of the nodes. The core answers 404 for them while
 * admin.token is unset and 401 without the token; every request that gets
 * here is an operator's, and each is logged with the client's address. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

#define USERS_PATH "/api/v1/admin/users"
#define CHANNELS_PREFIX "/api/v1/admin/channels/"

/* The settings of this plugin's config entry (checked by the core). */
static const chatd_setting admin_settings[] = {
    CHATD_STRING_SETTING("backend", NULL, util_sql_backends,
                         "the SQL store of users and channels (the auth and channel plugins')"),
    CHATD_SETTINGS_END,
};

static const char *const op_names[] = {"list users",     "ban",  "unban", "logout",
                                       "delete channel", "stats"};

static struct ajob *job_new(struct admin *a, chatd_http *req, enum admin_op op)
{
    struct ajob *j = calloc(1, sizeof *j);
    if (!j) {
        a->host->http_error(req, CHATD_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    j->a = a;
    j->http = req;
    j->op = op;
    return j;
}

static void job_free(struct ajob *j)
{
    json_decref(j->list);
    free(j->ids);
    free(j);
}

/* What the request was about, for the log. */
static void subject(const struct ajob *j, char *buf, size_t len)
{
    if (j->op == OP_BAN || j->op == OP_UNBAN || j->op == OP_LOGOUT)
        snprintf(buf, len, " of '%s'", j->username);
    else if (j->op == OP_DELETE_CHANNEL)
        snprintf(buf, len, " %lld", (long long)j->channel_id);
    else
        buf[0] = '\0';
}

static void log_action(const struct ajob *j, const char *outcome)
{
    char what[96];
    subject(j, what, sizeof what);
    j->a->host->log(j->a->p, CHATD_LOG_INFO, "%s%s by %s: %s", op_names[j->op], what,
                    j->a->host->http_peer(j->http), outcome);
}

/* Answer a failed job (and log it); frees j. */
static void fail(struct ajob *j, int status)
{
    const chatd_host *h = j->a->host;
    const char *what = j->op == OP_DELETE_CHANNEL ? "no such channel" : "no such user";
    if (status == CHATD_ENOTFOUND) {
        log_action(j, what);
        h->http_error(j->http, CHATD_ERR_NOT_FOUND, what);
    } else if (status == CHATD_EUNAVAIL || status == CHATD_EBUSY) {
        log_action(j, "storage unavailable");
        h->http_error(j->http, CHATD_ERR_UNAVAILABLE, "storage unavailable, retry later");
    } else {
        log_action(j, "failed");
        h->http_error(j->http, CHATD_ERR_INTERNAL, "admin request failed");
    }
    job_free(j);
}

/* ---- GET users: the rows, then who of them is online ---- */

static void users_online(void *arg, const unsigned char *online)
{
    struct ajob *j = arg;
    for (size_t i = 0; i < j->n_ids; i++)
        json_object_set_new(json_array_get(j->list, i), "online",
                            online ? json_boolean(online[i]) : json_null());
    char outcome[48];
    snprintf(outcome, sizeof outcome, "%zu listed", j->n_ids);
    log_action(j, outcome);
    j->a->host->http_reply(j->http, 200, json_pack("{s:O}", "users", j->list), NULL);
    job_free(j);
}

static void users_done(struct ajob *j)
{
    if (j->n_ids == 0) {
        users_online(j, NULL);
        return;
    }
    if (j->a->host->presence_of(j->ids, j->n_ids, users_online, j) < 0)
        fail(j, CHATD_ENOMEM);
}

/* ---- GET stats: the database's counts, then the nodes' ---- */

static int by_node(const void *x, const void *y)
{
    const char *a = json_string_value(json_object_get(*(json_t *const *)x, "node"));
    const char *b = json_string_value(json_object_get(*(json_t *const *)y, "node"));
    return strcmp(a ? a : "", b ? b : "");
}

/* {"node","connections","users"} of each node, by name; their connections summed. */
static json_t *node_list(const json_t *nodes, json_int_t *connections)
{
    size_t n = json_array_size(nodes);
    json_t **sorted = calloc(n + 1, sizeof *sorted);
    json_t *list = json_array();
    if (!sorted || !list) {
        free(sorted);
        json_decref(list);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = json_array_get(nodes, i);
    qsort(sorted, n, sizeof *sorted, by_node);
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_object_get(sorted[i], "node"));
        json_int_t c = json_integer_value(json_object_get(sorted[i], "connections"));
        *connections += c;
        json_array_append_new(
            list, json_pack("{s:s, s:I, s:I}", "node", name ? name : "", "connections", c, "users",
                            json_integer_value(json_object_get(sorted[i], "users"))));
    }
    free(sorted);
    return list;
}

static void stats_nodes(void *arg, const json_t *nodes)
{
    struct ajob *j = arg;
    json_int_t connections = 0;
    json_t *list = nodes ? node_list(nodes, &connections) : NULL;
    json_t *body = json_pack("{s:I, s:I, s:I, s:o, s:o}", "users", (json_int_t)j->users, "channels",
                             (json_int_t)j->channels, "messages", (json_int_t)j->messages,
                             "connections", list ? json_integer(connections) : json_null(), "nodes",
                             list ? list : json_null());
    log_action(j, list ? "answered" : "answered without the nodes (Redis unavailable)");
    j->a->host->http_reply(j->http, 200, body, NULL);
    job_free(j);
}

/* ---- the jobs' end ---- */

static void channel_deleted(struct ajob *j)
{
    const chatd_host *h = j->a->host;
    /* Out of the channel first, on every node; then told, each member once
     * per WebSocket, on every node. */
    for (size_t i = 0; i < j->n_ids; i++)
        h->user_leave_channel(j->ids[i], j->channel_id);
    for (size_t i = 0; i < j->n_ids; i++)
        h->send_user(j->ids[i], "NOTIFY_CHANNEL_DELETED",
                     json_pack("{s:o}", "channelId", util_channel_json(j->channel_id)));
    chatd_event ev = {.type = CHATD_EVENT_CHANNEL_CHANGED, .channel_id = j->channel_id};
    h->emit(j->a->p, &ev);
    char outcome[64];
    snprintf(outcome, sizeof outcome, "deleted, %zu members told", j->n_ids);
    log_action(j, outcome);
    h->http_reply(j->http, 200, json_pack("{s:o}", "channelId", util_channel_json(j->channel_id)),
                  NULL);
}

/* A ban's or a logout's sessions have ended on every node. */
static void sessions_ended(void *arg)
{
    struct ajob *j = arg;
    const chatd_host *h = j->a->host;
    if (j->op == OP_BAN) {
        log_action(j, "banned, sessions ended");
        h->http_reply(j->http, 200, json_pack("{s:s, s:b}", "username", j->username, "banned", 1),
                      NULL);
    } else {
        log_action(j, "sessions ended");
        h->http_reply(j->http, 200, json_pack("{s:s}", "username", j->username), NULL);
    }
    job_free(j);
}

static void done(void *arg, int status)
{
    struct ajob *j = arg;
    const chatd_host *h = j->a->host;
    if (status < 0) {
        fail(j, status);
        return;
    }
    switch (j->op) {
    case OP_USERS:
        users_done(j);
        return;
    case OP_STATS:
        if (h->node_stats(stats_nodes, j) < 0)
            fail(j, CHATD_ENOMEM);
        return;
    case OP_BAN:
    case OP_LOGOUT:
        /* answered once every node has forgotten the sessions (4001 there) */
        h->session_end_user_then(j->user_id, sessions_ended, j);
        return;
    case OP_UNBAN:
        log_action(j, "unbanned");
        h->http_reply(j->http, 200, json_pack("{s:s, s:b}", "username", j->username, "banned", 0),
                      NULL);
        break;
    case OP_DELETE_CHANNEL:
        channel_deleted(j);
        break;
    }
    job_free(j);
}

static int submit(struct ajob *j, int flags, chatd_job_run run)
{
    if (j->a->host->submit(j->a->p, flags, run, done, j) < 0) {
        fail(j, CHATD_EINTERNAL);
        return CHATD_OK;
    }
    return CHATD_PENDING;
}

static int bad_request(struct admin *a, chatd_http *req, const char *message)
{
    a->host->log(a->p, CHATD_LOG_INFO, "%s by %s: bad request (%s)", a->host->http_path(req),
                 a->host->http_peer(req), message);
    a->host->http_error(req, CHATD_ERR_BAD_REQUEST, message);
    return CHATD_OK;
}

/* ---- parameters ---- */

/* A query parameter into buf: 1 given, 0 absent, -1 given but longer than
 * buf holds (not percent-decodable: also "absent"). Loop thread only. */
static int query(struct admin *a, chatd_http *req, const char *key, char *buf, size_t len)
{
    /* as long as the longest request head (http.max_head_size): only the
     * pages a long value is decoded into are ever touched */
    static char any[(1 << 20) + 1];
    if (a->host->http_query(req, key, buf, len))
        return 1;
    return a->host->http_query(req, key, any, sizeof any) ? -1 : 0;
}

/* The prefix as a LIKE pattern that matches it literally, then anything. */
static void like_prefix(const char *prefix, char *out, size_t len)
{
    size_t n = 0;
    for (const char *c = prefix; *c && n + 3 < len; c++) {
        if (*c == '!' || *c == '%' || *c == '_')
            out[n++] = '!';
        out[n++] = *c;
    }
    out[n++] = '%';
    out[n] = '\0';
}

static int parse_limit(const char *s, int64_t *out)
{
    int64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 4 || strspn(s, "0123456789") != n)
        return CHATD_EINVAL;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    if (v < 1 || v > ADMIN_LIMIT_MAX)
        return CHATD_EINVAL;
    *out = v;
    return 0;
}

static int on_users(chatd_http *req, void *state)
{
    struct admin *a = state;
    char prefix[UTIL_NAME_MAX], limit[16];
    int has_prefix = query(a, req, "prefix", prefix, sizeof prefix);
    int has_limit = query(a, req, "limit", limit, sizeof limit);
    int64_t n = ADMIN_LIMIT_DEFAULT;
    if (has_prefix < 0)
        return bad_request(a, req, "prefix is longer than any username");
    if (has_limit != 0 && (has_limit < 0 || parse_limit(limit, &n) < 0))
        return bad_request(a, req, "limit must be an integer from 1 to 1000");
    struct ajob *j = job_new(a, req, OP_USERS);
    if (!j)
        return CHATD_OK;
    like_prefix(has_prefix ? prefix : "", j->pattern, sizeof j->pattern);
    j->limit = n;
    return submit(j, CHATD_JOB_READ, astore_users);
}

static int username_ok(const char *s, size_t n)
{
    if (n == 0 || n >= UTIL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", s[i]))
            return 0;
    return 1;
}

/* POST users/<username>/{ban,unban,logout} */
static int on_user_action(chatd_http *req, void *state)
{
    struct admin *a = state;
    const char *rest = a->host->http_path(req) + strlen(USERS_PATH "/");
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : 0;
    static const char *const actions[] = {"ban", "unban", "logout"};
    static const enum admin_op ops[] = {OP_BAN, OP_UNBAN, OP_LOGOUT};
    int which = -1;
    for (int i = 0; slash && i < 3; i++)
        if (strcmp(slash + 1, actions[i]) == 0)
            which = i;
    if (which < 0)
        return CHATD_DECLINED; /* 404: no such route */
    struct ajob *j = job_new(a, req, ops[which]);
    if (!j)
        return CHATD_OK;
    if (!username_ok(rest, n)) { /* a name no user can have */
        snprintf(j->username, sizeof j->username, "(invalid)");
        fail(j, CHATD_ENOTFOUND);
        return CHATD_OK;
    }
    memcpy(j->username, rest, n);
    j->username[n] = '\0';
    return submit(j, j->op == OP_LOGOUT ? CHATD_JOB_READ : CHATD_JOB_WRITE,
                  j->op == OP_LOGOUT ? astore_find_user : astore_set_banned);
}

/* DELETE channels/<channelId> */
static int on_delete_channel(chatd_http *req, void *state)
{
    struct admin *a = state;
    const char *rest = a->host->http_path(req) + strlen(CHANNELS_PREFIX);
    size_t n = strlen(rest);
    if (strchr(rest, '/'))
        return CHATD_DECLINED;
    int64_t id = 0;
    if (n == 0 || n > 18 || strspn(rest, "0123456789") != n)
        return bad_request(a, req, "channelId must be a positive integer");
    for (size_t i = 0; i < n; i++)
        id = id * 10 + (rest[i] - '0');
    if (id <= 0)
        return bad_request(a, req, "channelId must be a positive integer");
    struct ajob *j = job_new(a, req, OP_DELETE_CHANNEL);
    if (!j)
        return CHATD_OK;
    j->channel_id = id;
    return submit(j, CHATD_JOB_WRITE, astore_delete_channel);
}

static int on_stats(chatd_http *req, void *state)
{
    struct ajob *j = job_new(state, req, OP_STATS);
    return j ? submit(j, CHATD_JOB_READ, astore_stats) : CHATD_OK;
}

/* ---- life cycle ---- */

static void admin_cleanup(void *state)
{
    free(state);
}

static int admin_init(chatd_plugin *p, const chatd_host *host, const json_t *conf, void **state)
{
    (void)conf;
    if (util_need_sql(host, p) < 0)
        return CHATD_EINVAL;
    if (!CHATD_HOST_HAS(host, node_stats)) {
        host->log(p, CHATD_LOG_ERROR, "this chatd is older than the plugin (node_stats needed)");
        return CHATD_EINVAL;
    }
    struct admin *a = calloc(1, sizeof *a);
    if (!a)
        return CHATD_ENOMEM;
    *state = a;
    a->p = p;
    a->host = host;
    const int f = CHATD_HTTP_ADMIN;
    /* online: as the core tells presence (with the longest grace any plugin asked) */
    if (host->watch_presence(p, 0) < 0 || host->http_route(p, "GET", USERS_PATH, f, on_users) < 0 ||
        host->http_route(p, "POST", USERS_PATH "/", f | CHATD_HTTP_PREFIX, on_user_action) < 0 ||
        host->http_route(p, "DELETE", CHANNELS_PREFIX, f | CHATD_HTTP_PREFIX, on_delete_channel) <
            0 ||
        host->http_route(p, "GET", "/api/v1/admin/stats", f, on_stats) < 0)
        return CHATD_EINVAL;
    return 0;
}

static const chatd_plugin_desc admin_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "admin",          .version = "1.0",
    .init = admin_init,     .cleanup = admin_cleanup, .settings = admin_settings,
};

CHATD_PLUGIN(admin_desc)
