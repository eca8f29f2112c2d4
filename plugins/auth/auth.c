/* The auth plugin's handlers: HTTP register/login/logout/unregister and the
 * WebSocket FETCH_USER_INVITECODE_REQUEST. */
#include <argon2.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "plugin_util.h"

/* The reads of a login and of an invite code race other nodes' bans and the
 * registration just made (by nobody logged in yet): they read the primary,
 * never a read replica that may be behind. */
#define FRESH_READ (CHATD_JOB_READ | CHATD_JOB_PRIMARY)

/* The settings of this plugin's config entry (checked by the core). */
static const chatd_setting auth_settings[] = {
    CHATD_STRING_SETTING("backend", NULL, util_sql_backends, "the SQL store of users and sessions"),
    CHATD_INT_SETTING("argon2_t_cost", 2, 1, 100, "argon2id passes"),
    CHATD_INT_SETTING("argon2_m_cost", 19456, 8, 4 << 20, "argon2id memory in KiB"),
    CHATD_INT_SETTING("argon2_parallelism", 1, 1, 16, "argon2id lanes"),
    CHATD_INT_SETTING("username_min_length", 3, 1, 32,
                      "shortest username; characters are A-Z a-z 0-9 _ . -"),
    CHATD_INT_SETTING("username_max_length", 32, 1, 32, "longest username"),
    CHATD_INT_SETTING("password_min_length", 8, 1, 4096, "shortest password in bytes"),
    CHATD_INT_SETTING("password_max_length", 256, 1, 4096, "longest password in bytes"),
    CHATD_INT_SETTING("login_max_failures", 5, 1, 1000000,
                      "failed logins per username within the window before 429"),
    CHATD_INT_SETTING("login_max_failures_per_addr", 20, 1, 1000000,
                      "failed logins per client address within the window before 429"),
    CHATD_INT_SETTING("login_window", 300, 1, 86400 * 7, "seconds of the failure window"),
    CHATD_SETTINGS_END,
};

static int username_valid(const struct auth *a, const char *u)
{
    size_t n = strlen(u);
    if ((int64_t)n < a->username_min || (int64_t)n > a->username_max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)u[i]) && u[i] != '_' && u[i] != '.' && u[i] != '-')
            return 0;
    return 1;
}

/* Parse {"username","password"} from the body into a new job; answers 400 itself. */
static struct user_job *parse_credentials(struct auth *a, chatd_http *req, int strict)
{
    const chatd_host *h = a->host;
    size_t len;
    const char *body = h->http_body(req, &len);
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    const char *u = json_string_value(json_object_get(o, "username"));
    json_t *pw = json_object_get(o, "password");
    const char *problem = NULL;
    struct user_job *j = NULL;
    if (!json_is_object(o))
        problem = "body must be a JSON object";
    else if (!u || !json_is_string(pw))
        problem = "username and password are required strings";
    else if (strict && !username_valid(a, u))
        problem = "username must be 3 to 32 of A-Z a-z 0-9 _ . -";
    else if (strict && ((int64_t)json_string_length(pw) < a->password_min ||
                        (int64_t)json_string_length(pw) > a->password_max))
        problem = "password must be 8 to 256 bytes";
    else if (strlen(u) >= sizeof j->username || json_string_length(pw) > 4096 ||
             strlen(json_string_value(pw)) != json_string_length(pw))
        problem = "username or password too long, or contains NUL";
    if (!problem && !(j = user_job_new(a)))
        problem = "out of memory";
    if (j) {
        snprintf(j->username, sizeof j->username, "%s", u);
        if (!(j->password = strdup(json_string_value(pw)))) {
            user_job_free(j);
            j = NULL;
            problem = "out of memory";
        }
    }
    json_decref(o);
    if (problem)
        h->http_error(req, CHATD_ERR_BAD_REQUEST, problem);
    return j;
}

static void fail_unavailable(struct user_job *j, int status)
{
    const chatd_host *h = j->a->host;
    if (status == CHATD_EUNAVAIL)
        h->http_error(j->http, CHATD_ERR_UNAVAILABLE, "storage unavailable, retry later");
    else
        h->http_error(j->http, CHATD_ERR_INTERNAL, "internal error");
    user_job_free(j);
}

/* ---- register: hash (CPU) -> insert (write) -> 201 ---- */

static void register_inserted(void *arg, int status)
{
    struct user_job *j = arg;
    const chatd_host *h = j->a->host;
    if (status == CHATD_ECONFLICT) {
        h->http_error(j->http, CHATD_ERR_CONFLICT, "username taken");
        user_job_free(j);
        return;
    }
    if (status < 0) {
        fail_unavailable(j, status);
        return;
    }
    h->count(j->a->p, "users_registered", 1);
    h->http_reply(j->http, 201,
                  json_pack("{s:I, s:s, s:s}", "userId", (json_int_t)j->user_id, "username",
                            j->username, "inviteCode", j->invite_code),
                  NULL);
    chatd_event ev = {
        .type = CHATD_EVENT_USER_REGISTERED, .user_id = j->user_id, .username = j->username};
    h->emit(j->a->p, &ev);
    user_job_free(j);
}

static void register_hashed(void *arg, int status)
{
    struct user_job *j = arg;
    if (status < 0 ||
        j->a->host->submit(j->a->p, CHATD_JOB_WRITE, users_run_insert, register_inserted, j) < 0)
        fail_unavailable(j, status < 0 ? status : CHATD_EINTERNAL);
}

static int on_register(chatd_http *req, void *state)
{
    struct auth *a = state;
    struct user_job *j = parse_credentials(a, req, 1);
    if (!j)
        return CHATD_OK;
    j->http = req;
    if (a->host->submit(a->p, CHATD_JOB_CPU, auth_run_hash, register_hashed, j) < 0) {
        fail_unavailable(j, CHATD_EINTERNAL);
        return CHATD_OK;
    }
    return CHATD_PENDING;
}

/* ---- login: lookup (read) -> verify (CPU) -> session (write) -> 200 ---- */

static void lower(char *dst, const char *src, size_t len)
{
    size_t i = 0;
    for (; src[i] && i + 1 < len; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

/* A banned user's right password still gets no session: 403 (a wrong one
 * is 401 as for anyone, so the ban tells nothing to who lacks the password). */
static void login_refuse_banned(struct user_job *j)
{
    const chatd_host *h = j->a->host;
    h->count(j->a->p, "login_banned", 1);
    h->log(j->a->p, CHATD_LOG_INFO, "login refused for banned '%s' from %s", j->username,
           h->http_peer(j->http));
    h->http_error(j->http, CHATD_ERR_FORBIDDEN, "this user is banned");
    user_job_free(j);
}

static void login_checked_again(void *arg, int status)
{
    struct user_job *j = arg;
    const chatd_host *h = j->a->host;
    if (status < 0) { /* the token is never handed out: nobody can use the session */
        fail_unavailable(j, status);
        return;
    }
    if (j->banned) {
        /* A ban committed while this login was on its way: the ban's own
         * ending of sessions may have come before this one was stored. */
        h->session_end_user(j->user_id);
        login_refuse_banned(j);
        return;
    }
    char cookie[160];
    snprintf(cookie, sizeof cookie,
             "Set-Cookie: CHATSESSION=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%lld\r\n",
             j->token, (long long)h->session_ttl());
    h->count(j->a->p, "logins", 1);
    h->http_reply(j->http, 200,
                  json_pack("{s:s, s:I, s:s, s:I}", "token", j->token, "userId",
                            (json_int_t)j->user_id, "username", j->username, "expiresIn",
                            (json_int_t)h->session_ttl()),
                  cookie);
    explicit_bzero(cookie, sizeof cookie);
    user_job_free(j);
}

/* The session is stored: read the ban once more, after it. */
static void login_session_stored(void *arg, int status)
{
    struct user_job *j = arg;
    if (status < 0 ||
        j->a->host->submit(j->a->p, FRESH_READ, users_run_banned, login_checked_again, j) < 0)
        fail_unavailable(j, status < 0 ? status : CHATD_EINTERNAL);
}

static void login_verified(void *arg, int status)
{
    struct user_job *j = arg;
    struct auth *a = j->a;
    const chatd_host *h = a->host;
    const char *peer = h->http_peer(j->http);
    char key[64];
    lower(key, j->username, sizeof key);
    int64_t now = h->now_ms();
    if (status < 0) {
        fail_unavailable(j, status);
        return;
    }
    if (!j->verified) {
        ratelimit_fail(a->by_user, key, now);
        ratelimit_fail(a->by_addr, peer, now);
        h->shared_count(j->user_key, 1, a->window_s, NULL, NULL); /* for every node */
        h->shared_count(j->addr_key, 1, a->window_s, NULL, NULL);
        h->count(a->p, "login_failures", 1);
        h->log(a->p, CHATD_LOG_INFO, "login failed for '%s' from %s", j->username, peer);
        h->http_error(j->http, CHATD_ERR_UNAUTHORIZED, "bad username or password");
        user_job_free(j);
        return;
    }
    if (j->banned) {
        login_refuse_banned(j);
        return;
    }
    ratelimit_reset(a->by_user, key);
    h->shared_count(j->user_key, -1, 0, NULL, NULL);
    int rc = h->session_create(j->user_id, j->username, j->token, login_session_stored, j);
    if (rc < 0)
        fail_unavailable(j, rc);
}

static void login_looked_up(void *arg, int status)
{
    struct user_job *j = arg;
    if (status < 0 ||
        j->a->host->submit(j->a->p, CHATD_JOB_CPU, auth_run_verify, login_verified, j) < 0)
        fail_unavailable(j, status < 0 ? status : CHATD_EINTERNAL);
}

static void login_look_up(struct user_job *j)
{
    if (j->a->host->submit(j->a->p, FRESH_READ, users_run_lookup, login_looked_up, j) < 0)
        fail_unavailable(j, CHATD_EINTERNAL);
}

static void login_limited(struct user_job *j)
{
    j->a->host->count(j->a->p, "login_rate_limited", 1);
    j->a->host->http_error(j->http, CHATD_ERR_RATE_LIMITED,
                           "too many failed logins, try again later");
    user_job_free(j);
}

/* The failures every node counted for the address; with no answer (Redis
 * down) this node's own counts decide. */
static void login_addr_counted(void *arg, int status, int64_t count)
{
    struct user_job *j = arg;
    if (status == 0 && count >= j->a->max_addr)
        login_limited(j);
    else
        login_look_up(j);
}

static void login_user_counted(void *arg, int status, int64_t count)
{
    struct user_job *j = arg;
    if (status == 0 && count >= j->a->max_user)
        login_limited(j);
    else if (j->a->host->shared_count(j->addr_key, 0, j->a->window_s, login_addr_counted, j) < 0)
        login_look_up(j);
}

static int on_login(chatd_http *req, void *state)
{
    struct auth *a = state;
    const chatd_host *h = a->host;
    struct user_job *j = parse_credentials(a, req, 0);
    if (!j)
        return CHATD_OK;
    j->http = req;
    char key[64];
    lower(key, j->username, sizeof key);
    int64_t now = h->now_ms();
    if (ratelimit_blocked(a->by_user, key, now) ||
        ratelimit_blocked(a->by_addr, h->http_peer(req), now)) {
        login_limited(j);
        return CHATD_OK;
    }
    snprintf(j->user_key, sizeof j->user_key, "loginfail:u:%s", key);
    snprintf(j->addr_key, sizeof j->addr_key, "loginfail:a:%s", h->http_peer(req));
    /* With several nodes the failures every node saw count (in Redis). */
    if (h->shared_count(j->user_key, 0, a->window_s, login_user_counted, j) < 0)
        login_look_up(j);
    return CHATD_PENDING;
}

/* ---- logout ---- */

/* Answered once no node accepts the token. The browser drops its cookie
 * too: a dead token is no use to keep. */
static void logged_out(void *arg)
{
    struct user_job *j = arg;
    j->a->host->http_reply(
        j->http, 204, NULL,
        "Set-Cookie: CHATSESSION=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0\r\n");
    j->http = NULL;
    user_job_free(j);
}

static int on_logout(chatd_http *req, void *state)
{
    struct auth *a = state;
    struct user_job *j = user_job_new(a);
    if (!j) {
        a->host->http_error(req, CHATD_ERR_INTERNAL, "out of memory");
        return CHATD_OK;
    }
    j->http = req;
    if (a->host->session_end_http_then(req, logged_out, j) < 0)
        logged_out(j); /* the session ended meanwhile: nothing left to end */
    return CHATD_PENDING;
}

/* ---- session: whether the token is still good ---- */

/* A client that cannot tell a refused WebSocket from a server that is down
 * asks here: 200 while its session lives, 401 once it has ended. */
static int on_session(chatd_http *req, void *state)
{
    struct auth *a = state;
    a->host->http_reply(req, 200,
                        json_pack("{s:I, s:I}", "userId", (json_int_t)a->host->http_user_id(req),
                                  "ttl", (json_int_t)a->host->session_ttl()),
                        NULL);
    return CHATD_OK;
}

/* ---- unregister: delete (write) -> end sessions -> 204 ---- */

static void unregister_deleted(void *arg, int status)
{
    struct user_job *j = arg;
    const chatd_host *h = j->a->host;
    if (status < 0 && status != CHATD_ENOTFOUND) {
        fail_unavailable(j, status);
        return;
    }
    chatd_event ev = {.type = CHATD_EVENT_USER_REMOVED, .user_id = j->user_id};
    h->emit(j->a->p, &ev);
    h->count(j->a->p, "users_removed", 1);
    h->http_reply(j->http, 204, NULL, NULL);
    user_job_free(j);
}

static void unregister_sessions_ended(void *arg)
{
    struct user_job *j = arg;
    if (j->a->host->submit(j->a->p, CHATD_JOB_WRITE, users_run_delete, unregister_deleted, j) < 0)
        fail_unavailable(j, CHATD_EINTERNAL);
}

static int on_unregister(chatd_http *req, void *state)
{
    struct auth *a = state;
    struct user_job *j = user_job_new(a);
    if (!j) {
        a->host->http_error(req, CHATD_ERR_INTERNAL, "out of memory");
        return CHATD_OK;
    }
    j->http = req;
    j->user_id = a->host->http_user_id(req);
    /* Sessions end first, on every node: whatever happens to the removal
     * after this, no token of the user works any more (at worst the user
     * logs in again). */
    a->host->session_end_user_then(j->user_id, unregister_sessions_ended, j);
    return CHATD_PENDING;
}

/* ---- FETCH_USER_INVITECODE_REQUEST ---- */

static void invite_fetched(void *arg, int status)
{
    struct user_job *j = arg;
    const chatd_host *h = j->a->host;
    if (status == 0)
        h->reply(j->req, "FETCH_USER_INVITECODE_RESPONSE",
                 json_pack("{s:s}", "inviteCode", j->invite_code));
    else if (status == CHATD_ENOTFOUND)
        h->error(j->req, CHATD_ERR_NOT_FOUND, "user not found");
    else if (status == CHATD_EUNAVAIL)
        h->error(j->req, CHATD_ERR_UNAVAILABLE, "storage unavailable, retry later");
    else
        h->error(j->req, CHATD_ERR_INTERNAL, "invite code lookup failed");
    user_job_free(j);
}

static int on_fetch_invite(chatd_req *req, const json_t *msg, void *state)
{
    struct auth *a = state;
    (void)msg;
    struct user_job *j = user_job_new(a);
    if (!j)
        return CHATD_EINTERNAL;
    j->req = req;
    j->user_id = a->host->req_user_id(req);
    if (a->host->submit(a->p, FRESH_READ, users_run_invite, invite_fetched, j) < 0) {
        user_job_free(j);
        return CHATD_EINTERNAL;
    }
    return CHATD_PENDING;
}

/* ---- life cycle ---- */

static void auth_cleanup(void *state)
{
    struct auth *a = state;
    if (!a)
        return;
    ratelimit_free(a->by_user);
    ratelimit_free(a->by_addr);
    free(a->dummy_hash);
    free(a);
}

static int auth_init(chatd_plugin *p, const chatd_host *host, const json_t *conf, void **state)
{
    if (util_need_sql(host, p) < 0)
        return CHATD_EINVAL;
    struct auth *a = calloc(1, sizeof *a);
    if (!a)
        return CHATD_ENOMEM;
    *state = a;
    a->p = p;
    a->host = host;
    int64_t t, m, par, max_user, max_addr, window;
    if (util_setting_int(host, p, conf, auth_settings, "argon2_t_cost", &t) < 0 ||
        util_setting_int(host, p, conf, auth_settings, "argon2_m_cost", &m) < 0 ||
        util_setting_int(host, p, conf, auth_settings, "argon2_parallelism", &par) < 0 ||
        util_setting_int(host, p, conf, auth_settings, "username_min_length", &a->username_min) <
            0 ||
        util_setting_int(host, p, conf, auth_settings, "username_max_length", &a->username_max) <
            0 ||
        util_setting_int(host, p, conf, auth_settings, "password_min_length", &a->password_min) <
            0 ||
        util_setting_int(host, p, conf, auth_settings, "password_max_length", &a->password_max) <
            0 ||
        util_setting_int(host, p, conf, auth_settings, "login_max_failures", &max_user) < 0 ||
        util_setting_int(host, p, conf, auth_settings, "login_max_failures_per_addr", &max_addr) <
            0 ||
        util_setting_int(host, p, conf, auth_settings, "login_window", &window) < 0)
        return CHATD_EINVAL;
    a->t_cost = (uint32_t)t;
    a->m_cost = (uint32_t)m;
    a->parallelism = (uint32_t)par;
    if (a->m_cost < 8 * a->parallelism)
        a->m_cost = 8 * a->parallelism;
    a->by_user = ratelimit_new(host, max_user, window * 1000);
    a->by_addr = ratelimit_new(host, max_addr, window * 1000);
    a->max_user = max_user;
    a->max_addr = max_addr;
    a->window_s = window;
    /* A real hash to verify unknown users against, so they cost a full verify. */
    struct user_job probe = {.a = a, .password = "no such user: dummy password"};
    int rc = a->by_user && a->by_addr ? auth_run_hash(NULL, &probe) : CHATD_ENOMEM;
    a->dummy_hash = probe.hash;
    if (rc < 0 || host->http_route(p, "POST", "/api/v1/auth/register", 0, on_register) < 0 ||
        host->http_route(p, "POST", "/api/v1/auth/login", 0, on_login) < 0 ||
        host->http_route(p, "POST", "/api/v1/auth/logout", CHATD_HTTP_AUTH, on_logout) < 0 ||
        host->http_route(p, "GET", "/api/v1/auth/session", CHATD_HTTP_AUTH, on_session) < 0 ||
        host->http_route(p, "POST", "/api/v1/auth/unregister", CHATD_HTTP_AUTH, on_unregister) <
            0 ||
        host->on_message(p, "FETCH_USER_INVITECODE_REQUEST", on_fetch_invite) < 0)
        return rc < 0 ? rc : CHATD_EINVAL;
    return 0;
}

static const chatd_plugin_desc auth_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "auth",          .version = "1.0",
    .init = auth_init,      .cleanup = auth_cleanup, .settings = auth_settings,
};

CHATD_PLUGIN(auth_desc)
