#include "plugins.h"

#include <dlfcn.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "dispatch.h"
#include "http.h"
#include "log.h"
#include "bus.h"
#include "conn.h"
#include "metrics.h"
#include "presence.h"
#include "redis.h"
#include "router.h"
#include "session.h"
#include "store.h"

#ifndef CHATD_PLUGIN_DIR
#define CHATD_PLUGIN_DIR "/usr/local/lib/chatd"
#endif
#ifndef CHATD_SQL_DIR
#define CHATD_SQL_DIR "/usr/local/share/chatd/sql"
#endif
#ifndef CHATD_SOURCE_SQL_DIR
#define CHATD_SOURCE_SQL_DIR CHATD_SQL_DIR
#endif

static struct chatd_plugin *plugins, *plugins_tail;
static const struct settings *settings;

/* User-removal hooks, in load order; fixed after start-up, so workers read
 * the array without a lock. */
static struct user_hook {
    struct chatd_plugin *owner;
    chatd_user_hook fn;
} *user_hooks;
static size_t n_user_hooks;

/* ---- where things are ---- */

/* The build directory when this executable is core/chatd inside a meson build
 * tree, else NULL. Lets `build/core/chatd -c etc/chatd.conf` run uninstalled. */
static const char *build_root(void)
{
    static char root[PATH_MAX + 8];
    static int done;
    if (done)
        return root[0] ? root : NULL;
    done = 1;
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0'; /* .../build/core */
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/../meson-private", exe);
    struct stat sb;
    if (stat(probe, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(root, sizeof root, "%s/..", exe);
    return root[0] ? root : NULL;
}

const char *chatd_plugin_dir(const struct settings *s)
{
    if (s->plugin_dir[0])
        return s->plugin_dir;
    return build_root() ? NULL : CHATD_PLUGIN_DIR;
}

const char *chatd_sql_dir(const struct settings *s)
{
    if (s->sql_dir[0])
        return s->sql_dir;
    return build_root() ? CHATD_SOURCE_SQL_DIR : CHATD_SQL_DIR;
}

static void plugin_path(const struct settings *s, const char *name, const char *given, char *out,
                        size_t len)
{
    /* Paths past PATH_MAX fail at stat() with the path named: truncation is harmless. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
    const char *dir = chatd_plugin_dir(s);
    if (given && *given) {
        if (strchr(given, '/') || !dir)
            snprintf(out, len, "%s", given);
        else
            snprintf(out, len, "%s/%s", dir, given);
    } else if (dir) {
        snprintf(out, len, "%s/%s.so", dir, name);
    } else {
        snprintf(out, len, "%s/plugins/%s/%s.so", build_root(), name, name);
    }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
}

/* ---- host table ---- */

static void h_log(chatd_plugin *p, chatd_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, p ? p->name : "plugin", fmt, ap);
    va_end(ap);
}

static void h_count(chatd_plugin *p, const char *name, uint64_t delta)
{
    (void)p;
    metrics_count(name, delta);
}

static int h_on_message(chatd_plugin *p, const char *type, chatd_msg_handler fn)
{
    return dispatch_register(p, type, fn);
}

static int h_http_route(chatd_plugin *p, const char *method, const char *path, int flags,
                        chatd_http_handler fn)
{
    return router_add(p, method, path, flags, fn, NULL);
}

static int h_on_event(chatd_plugin *p, chatd_event_type type, chatd_event_handler fn)
{
    if ((int)type <= 0 || (size_t)type >= sizeof p->events / sizeof p->events[0])
        return CHATD_EINVAL;
    p->events[type] = fn;
    return 0;
}

static void h_emit(chatd_plugin *p, const chatd_event *ev)
{
    (void)p;
    plugins_emit(ev);
}

static int h_send_user(int64_t user_id, const char *type, json_t *body)
{
    return dispatch_send_user(user_id, type, body);
}

static int h_session_end_http(chatd_http *req)
{
    struct session *s = req->session_key[0] ? session_find_key(req->session_key) : NULL;
    if (!s)
        return CHATD_ENOTFOUND;
    session_end(s);
    return 0;
}

static int h_session_end_user(int64_t user_id)
{
    session_end_user(user_id);
    return 0;
}

static const char *h_http_body(const chatd_http *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body ? req->body : "";
}

static const char *h_http_peer(const chatd_http *req)
{
    return req->peer;
}

static int64_t h_http_user_id(const chatd_http *req)
{
    return req->user_id;
}

static int h_http_reply(chatd_http *req, int status, json_t *body, const char *extra)
{
    if (status < 200 || status > 599) {
        json_decref(body);
        status = 500;
        body = NULL;
    }
    http_respond_json(req, status, body, extra);
    return 0;
}

static int h_http_error(chatd_http *req, chatd_error_code code, const char *message)
{
    http_respond_error(req, code, 0, message);
    return 0;
}

static int h_submit(chatd_plugin *p, int flags, chatd_job_run run, chatd_job_done done, void *arg)
{
    if (!(flags & CHATD_JOB_CPU) && !p->backend)
        return CHATD_EINVAL;
    return store_submit(p->backend, flags, run, done, arg);
}

static chatd_stmt *h_db_prepare(chatd_db *db, const char *sql)
{
    return db->drv->prepare(db, sql);
}

static int h_db_bind_int(chatd_stmt *st, int idx, int64_t v)
{
    return st->db->drv->bind_int(st, idx, v);
}

static int h_db_bind_text(chatd_stmt *st, int idx, const char *s, size_t len)
{
    return st->db->drv->bind_text(st, idx, s, len);
}

static int h_db_bind_blob(chatd_stmt *st, int idx, const void *b, size_t len)
{
    return st->db->drv->bind_blob(st, idx, b, len);
}

static int h_db_bind_null(chatd_stmt *st, int idx)
{
    return st->db->drv->bind_null(st, idx);
}

static int h_db_step(chatd_stmt *st)
{
    return st->db->drv->step(st);
}

static int64_t h_db_column_int(chatd_stmt *st, int col)
{
    return st->db->drv->column_int(st, col);
}

static const char *h_db_column_text(chatd_stmt *st, int col, size_t *len)
{
    return st->db->drv->column_text(st, col, len);
}

static int h_db_column_is_null(chatd_stmt *st, int col)
{
    return st->db->drv->column_is_null(st, col);
}

static void h_db_reset(chatd_stmt *st)
{
    st->db->drv->reset(st);
}

static int64_t h_db_last_insert_id(chatd_db *db)
{
    return db->drv->last_insert_id(db);
}

static int64_t h_db_changes(chatd_db *db)
{
    return db->drv->changes(db);
}

static const char *h_db_dialect(chatd_db *db)
{
    return db->drv->name;
}

static int h_random_bytes(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : CHATD_EINTERNAL;
}

static int h_db_user_removing(chatd_db *db, int64_t user_id)
{
    /* Sessions kept in this same database go in the same transaction. */
    if (strcmp(settings->session_backend, db->drv->name) == 0) {
        chatd_stmt *st = db->drv->prepare(db, "DELETE FROM user_session WHERE user_id = ?");
        int rc = st ? db->drv->bind_int(st, 1, user_id) : CHATD_EINTERNAL;
        if (rc == 0)
            rc = db->drv->step(st);
        if (st)
            db->drv->reset(st);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < n_user_hooks; i++) {
        int rc = user_hooks[i].fn(db, user_id, user_hooks[i].owner->state);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int h_on_user_removing(chatd_plugin *p, chatd_user_hook fn)
{
    if (p->initialised)
        return CHATD_EINVAL; /* workers read the list without a lock: init() only */
    struct user_hook *n = realloc(user_hooks, (n_user_hooks + 1) * sizeof *n);
    if (!n)
        return CHATD_ENOMEM;
    user_hooks = n;
    user_hooks[n_user_hooks++] = (struct user_hook){p, fn};
    return 0;
}

static int h_conn_enter(uint64_t conn_id, int64_t channel_id)
{
    struct conn *c = conn_find(conn_id);
    if (!c || c->state != CONN_WS || channel_id < 0)
        return CHATD_ENOTFOUND;
    return presence_enter(c, channel_id);
}

static int64_t h_conn_channel(uint64_t conn_id)
{
    struct conn *c = conn_find(conn_id);
    return c ? c->channel_id : 0;
}

static int h_user_online(int64_t user_id)
{
    return presence_user_conns(user_id) != NULL;
}

static void h_user_leave_channel(int64_t user_id, int64_t channel_id)
{
    presence_user_leave_channel(user_id, channel_id);
    bus_user_leave_channel(user_id, channel_id); /* and on every other node */
}

static const char *h_data_dir(void)
{
    return settings->data_dir;
}

static const char *h_backend_name(chatd_plugin *p)
{
    return p->backend ? store_backend_name(p->backend) : NULL;
}

struct redis_done {
    void (*done)(void *arg, int status);
    void *arg;
};

static void h_redis_replied(struct redisReply *r, void *arg)
{
    struct redis_done *d = arg;
    if (d->done)
        d->done(d->arg, r ? 0 : CHATD_EUNAVAIL);
    free(d);
}

static int h_redis_command(int argc, const char *const *argv, const size_t *argvlen,
                           void (*done)(void *arg, int status), void *arg)
{
    struct redis_done *d = malloc(sizeof *d);
    if (!d)
        return CHATD_ENOMEM;
    d->done = done;
    d->arg = arg;
    int rc = redis_enabled() ? redis_cmdv(h_redis_replied, d, argc, (const char **)argv, argvlen)
                             : CHATD_EUNAVAIL;
    if (rc < 0)
        free(d);
    return rc;
}

struct count_done {
    void (*done)(void *arg, int status, int64_t count);
    void *arg;
};

static void h_counted(struct redisReply *r, void *arg)
{
    struct count_done *d = arg;
    if (d->done)
        d->done(d->arg, r && r->type == REDIS_REPLY_INTEGER ? 0 : CHATD_EUNAVAIL,
                r && r->type == REDIS_REPLY_INTEGER ? (int64_t)r->integer : 0);
    free(d);
}

static int h_shared_count(const char *key, int64_t add, int64_t window_s,
                          void (*done)(void *arg, int status, int64_t count), void *arg)
{
    if (!redis_enabled() || !key)
        return CHATD_EUNAVAIL;
    struct count_done *d = malloc(sizeof *d);
    if (!d)
        return CHATD_ENOMEM;
    d->done = done;
    d->arg = arg;
    int rc = redis_cmd(h_counted, d,
                       "EVAL %s 1 %scount:%s %lld %lld",
                       "local a = tonumber(ARGV[1]) "
                       "if a < 0 then redis.call('DEL', KEYS[1]) return 0 end "
                       "if a == 0 then return tonumber(redis.call('GET', KEYS[1]) or '0') end "
                       "local c = redis.call('INCRBY', KEYS[1], a) "
                       "if c == a then redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
                       "return c",
                       redis_prefix(), key, (long long)add, (long long)window_s);
    if (rc < 0)
        free(d);
    return rc;
}

static int64_t h_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static const chatd_host host = {
    .struct_size = sizeof(chatd_host),
    .abi_major = CHATD_ABI_MAJOR,
    .abi_minor = CHATD_ABI_MINOR,
    .log = h_log,
    .count = h_count,
    .on_message = h_on_message,
    .http_route = h_http_route,
    .on_event = h_on_event,
    .emit = h_emit,
    .req_user_id = dispatch_req_user_id,
    .req_username = dispatch_req_username,
    .req_conn_id = dispatch_req_conn_id,
    .req_type = dispatch_req_type,
    .reply = dispatch_reply,
    .error = dispatch_error,
    .req_done = dispatch_req_done,
    .send_conn = dispatch_send_conn,
    .send_user = h_send_user,
    .session_create = session_create,
    .session_end_http = h_session_end_http,
    .session_end_user = h_session_end_user,
    .session_ttl = session_ttl,
    .http_body = h_http_body,
    .http_header = http_header_get,
    .http_peer = h_http_peer,
    .http_user_id = h_http_user_id,
    .http_reply = h_http_reply,
    .http_error = h_http_error,
    .submit = h_submit,
    .db_prepare = h_db_prepare,
    .db_bind_int = h_db_bind_int,
    .db_bind_text = h_db_bind_text,
    .db_bind_blob = h_db_bind_blob,
    .db_bind_null = h_db_bind_null,
    .db_step = h_db_step,
    .db_column_int = h_db_column_int,
    .db_column_text = h_db_column_text,
    .db_column_is_null = h_db_column_is_null,
    .db_reset = h_db_reset,
    .db_last_insert_id = h_db_last_insert_id,
    .db_changes = h_db_changes,
    .db_dialect = h_db_dialect,
    .db_user_removing = h_db_user_removing,
    .post = store_post,
    .random_bytes = h_random_bytes,
    .now_ms = h_now_ms,
    .conn_enter = h_conn_enter,
    .conn_channel = h_conn_channel,
    .user_in_channel = presence_user_in_channel,
    .user_online = h_user_online,
    .user_leave_channel = h_user_leave_channel,
    .send_channel = dispatch_send_channel,
    .notify_user = dispatch_notify_user,
    .push = dispatch_push,
    .on_user_removing = h_on_user_removing,
    .data_dir = h_data_dir,
    .backend_name = h_backend_name,
    .push_absent = dispatch_push_absent,
    .redis_command = h_redis_command,
    .shared_count = h_shared_count,
};

const chatd_host *plugins_host(void)
{
    return &host;
}

void *plugin_state(const struct chatd_plugin *p)
{
    return p->state;
}

/* ---- loading ---- */

static void plugin_free(struct chatd_plugin *p)
{
    dispatch_remove_owner(p);
    router_remove_owner(p);
    if (p->dl)
        dlclose(p->dl);
    json_decref(p->config);
    free(p->name);
    free(p->path);
    free(p);
}

static int load_one(const struct settings *s, json_t *conf, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(conf, "name"));
    const char *given = json_string_value(json_object_get(conf, "path"));
    const char *backend = json_string_value(json_object_get(conf, "backend"));
    char path[PATH_MAX];
    plugin_path(s, name, given, path, sizeof path);
    struct chatd_plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name)) || !(p->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    p->config = json_incref(conf);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(err, errlen, "plugin '%s': no such file %s", name, path);
        goto fail;
    }
    if (!(p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
        snprintf(err, errlen, "plugin '%s': cannot load %s: %s", name, path, dlerror());
        goto fail;
    }
    chatd_plugin_entry_fn entry;
    *(void **)&entry = dlsym(p->dl, CHATD_PLUGIN_ENTRY_SYMBOL);
    const chatd_plugin_desc *d = entry ? entry() : NULL;
    if (!d) {
        snprintf(err, errlen, "plugin '%s': %s exports no %s", name, path,
                 CHATD_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    if (d->struct_size < offsetof(chatd_plugin_desc, abi_minor) + sizeof d->abi_minor ||
        d->abi_major != CHATD_ABI_MAJOR) {
        snprintf(err, errlen,
                 "plugin '%s': %s was built for plugin ABI %d.%d; this chatd speaks %d.%d",
                 name, path, d->abi_major, d->abi_minor, CHATD_ABI_MAJOR, CHATD_ABI_MINOR);
        goto fail;
    }
    /* Copy what the plugin declared; fields it does not know stay zero. */
    memcpy(&p->desc, d, d->struct_size < sizeof p->desc ? d->struct_size : sizeof p->desc);
    if (!p->desc.init) {
        snprintf(err, errlen, "plugin '%s': %s has no init function", name, path);
        goto fail;
    }
    /* A backend that names a SQL driver gets its pools; any other value
     * (push's "log", say) is the plugin's own to interpret. */
    if (backend && db_driver_find(backend) &&
        !(p->backend = store_backend_open(backend, err, errlen))) {
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "plugin '%s': backend '%s': %s", name, backend, why);
        goto fail;
    }
    /* Link it before init: init registers handlers that name p. */
    if (plugins_tail)
        plugins_tail->next = p;
    else
        plugins = p;
    plugins_tail = p;
    int rc = p->desc.init(p, &host, conf, &p->state);
    p->initialised = 1; /* cleanup runs even after a failed init, with the state it set */
    if (rc < 0) {
        snprintf(err, errlen, "plugin '%s': init failed (%d)", name, rc);
        return rc; /* unloaded with the others by plugins_unload_all */
    }
    log_info("loaded plugin %s %s from %s", name, p->desc.version ? p->desc.version : "?", path);
    return 0;
fail:
    if (p)
        plugin_free(p);
    return CHATD_EINVAL;
}

int plugins_load_all(const struct settings *s, char *err, size_t errlen)
{
    settings = s;
    size_t i;
    json_t *conf;
    json_array_foreach(s->plugins, i, conf)
    {
        int rc = load_one(s, conf, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void plugins_unload_all(void)
{
    /* Last loaded first: a later plugin may depend on an earlier one. */
    while (plugins) {
        struct chatd_plugin *last = plugins, *prev = NULL;
        while (last->next) {
            prev = last;
            last = last->next;
        }
        if (prev)
            prev->next = NULL;
        else
            plugins = NULL;
        if (last->initialised && last->desc.cleanup && last->state)
            last->desc.cleanup(last->state);
        plugin_free(last);
    }
    plugins_tail = NULL;
    free(user_hooks);
    user_hooks = NULL;
    n_user_hooks = 0;
}

void plugins_emit(const chatd_event *ev)
{
    for (struct chatd_plugin *p = plugins; p; p = p->next)
        if ((size_t)ev->type < sizeof p->events / sizeof p->events[0] && p->events[ev->type])
            p->events[ev->type](ev, p->state);
}
