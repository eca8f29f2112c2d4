/* The host table: the core's services as the plugins see them. */
#include "host.h"

#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "client.h"
#include "clock.h"
#include "counter.h"
#include "db.h"
#include "deliver.h"
#include "dispatch.h"
#include "filters.h"
#include "hmap.h"
#include "http.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "nodes.h"
#include "online.h"
#include "presence.h"
#include "push_intent.h"
#include "redis.h"
#include "router.h"
#include "session.h"
#include "store.h"

static const char *data_dir;
static struct event_base *loop_base;

static void *h_event_base(void)
{
    return loop_base;
}

static void h_log(chatd_plugin *p, chatd_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, p ? p->name : "plugin", fmt, ap);
    va_end(ap);
}

static void h_count(chatd_plugin *p, const char *name, uint64_t delta)
{
    metrics_plugin_count(p ? p->name : "plugin", name, delta);
}

static int h_on_message(chatd_plugin *p, const char *type, chatd_msg_handler fn)
{
    return dispatch_register(p, type, fn, p->state);
}

static int h_http_route(chatd_plugin *p, const char *method, const char *path, int flags,
                        chatd_http_handler fn)
{
    flags &= CHATD_HTTP_AUTH | CHATD_HTTP_ADMIN | CHATD_HTTP_PREFIX;
    if ((flags & CHATD_HTTP_AUTH && flags & CHATD_HTTP_ADMIN) ||
        (flags & CHATD_HTTP_PREFIX && (!path || !*path || path[strlen(path) - 1] != '/')))
        return CHATD_EINVAL;
    return router_add(p, method, path, flags, fn, p->state);
}

static const char *h_http_path(const chatd_http *req)
{
    return req->path;
}

static const char *h_http_query(const chatd_http *req, const char *key, char *buf, size_t len)
{
    return req->query ? http_query_get(req->query, key, buf, len) : NULL;
}

static void h_emit(chatd_plugin *p, const chatd_event *ev)
{
    (void)p;
    loader_emit(ev);
}

static int h_session_end_http_then(chatd_http *req, void (*done)(void *arg), void *arg)
{
    struct session *s = req->session_key[0] ? session_find_key(req->session_key) : NULL;
    if (!s)
        return CHATD_ENOTFOUND;
    /* done may answer (and free) req: nothing of it is read after */
    char key[sizeof req->session_key];
    memcpy(key, req->session_key, sizeof key);
    chatd_event ev = {
        .type = CHATD_EVENT_SESSION_ENDED, .user_id = req->user_id, .session_key = key};
    loader_emit(&ev);
    session_end_then(s, done, arg);
    return 0;
}

static int h_session_end_http(chatd_http *req)
{
    return h_session_end_http_then(req, NULL, NULL);
}

static int h_session_end_user_then(int64_t user_id, void (*done)(void *arg), void *arg)
{
    session_end_user_then(user_id, done, arg);
    return 0;
}

static const char *h_req_session_key(chatd_req *req)
{
    struct client *c = client_find(dispatch_req_conn_id(req));
    return c && c->session ? session_key(c->session) : NULL;
}

static void h_observe_us(chatd_plugin *p, const char *name, uint64_t us)
{
    metrics_plugin_observe_us(p ? p->name : "plugin", name, us);
}

static int h_on_message_filter(chatd_plugin *p, chatd_message_filter fn)
{
    if (!fn || p->initialised)
        return CHATD_EINVAL; /* init only: the chain's order is the config's */
    return filters_add(p, fn, p->state);
}

static void h_gauge(chatd_plugin *p, const char *name, int64_t value)
{
    metrics_plugin_gauge(p ? p->name : "plugin", name, value);
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

static int h_submit_keyed(chatd_plugin *p, int flags, uint64_t key, chatd_job_run run,
                          chatd_job_done done, void *arg)
{
    if (!(flags & CHATD_JOB_CPU) && !p->backend)
        return CHATD_EINVAL;
    return store_submit_keyed(p->backend, flags, key, run, done, arg);
}

static int h_submit(chatd_plugin *p, int flags, chatd_job_run run, chatd_job_done done, void *arg)
{
    return h_submit_keyed(p, flags, 0, run, done, arg);
}

static int h_job_batch(chatd_plugin *p, chatd_job_run run, chatd_job_run_batch run_batch)
{
    (void)p;
    return store_batch_register(run, run_batch);
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

static int h_db_step_later(chatd_stmt *st)
{
    const struct db_driver *drv = st->db->drv;
    return drv->step_later ? drv->step_later(st) : drv->step(st);
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
    int rc = session_remove_user_rows(db, user_id);
    return rc < 0 ? rc : loader_user_removing(db, user_id);
}

static int h_conn_enter(uint64_t conn_id, int64_t channel_id)
{
    struct client *c = client_find(conn_id);
    if (!c || channel_id < 0)
        return CHATD_ENOTFOUND;
    return presence_enter(c, channel_id);
}

static int64_t h_conn_channel(uint64_t conn_id)
{
    struct client *c = client_find(conn_id);
    return c ? c->channel_id : 0;
}

static void h_user_leave_channel(int64_t user_id, int64_t channel_id)
{
    presence_user_leave_channel(user_id, channel_id);
    bus_user_leave_channel(user_id, channel_id); /* and on every other node */
}

static const char *h_data_dir(void)
{
    return data_dir;
}

static const char *h_backend_name(chatd_plugin *p)
{
    return p->backend ? store_backend_name(p->backend) : NULL;
}

struct host_redis {
    struct redis_call call; /* first: the answer comes with it */
    void (*done)(void *arg, int status);
    void *arg;
};

/* Set once the plugins are unloaded: answers that come after (Redis closing
 * its connection answers what was in flight) go to nobody. */
static int plugins_gone;

void host_plugins_gone(void)
{
    plugins_gone = 1;
}

static void h_redis_replied(struct redisReply *r, struct redis_call *call)
{
    struct host_redis *d = (struct host_redis *)call;
    if (d->done && !plugins_gone)
        d->done(d->arg, r ? 0 : CHATD_EUNAVAIL);
    free(d);
}

static int h_redis_command(int argc, const char *const *argv, const size_t *argvlen,
                           void (*done)(void *arg, int status), void *arg)
{
    if (!redis_enabled())
        return CHATD_EUNAVAIL;
    struct host_redis *d = malloc(sizeof *d);
    if (!d)
        return CHATD_ENOMEM;
    *d = (struct host_redis){{h_redis_replied}, done, arg};
    int rc = redis_cmdv(&d->call, argc, (const char **)argv, argvlen);
    if (rc < 0)
        free(d);
    return rc;
}

struct host_count {
    struct redis_count count; /* first: the answer comes with it */
    void (*done)(void *arg, int status, int64_t count);
    void *arg;
};

static void h_counted(struct redis_count *c, int status, int64_t count)
{
    struct host_count *d = (struct host_count *)c;
    if (d->done && !plugins_gone)
        d->done(d->arg, status, count);
    free(d);
}

static int h_shared_count(const char *key, int64_t add, int64_t window_s,
                          void (*done)(void *arg, int status, int64_t count), void *arg)
{
    if (!redis_enabled() || !key)
        return CHATD_EUNAVAIL;
    struct host_count *d = malloc(sizeof *d);
    if (!d)
        return CHATD_ENOMEM;
    *d = (struct host_count){{.done = h_counted}, done, arg};
    int rc = redis_shared_count(key, add, window_s, &d->count);
    if (rc < 0)
        free(d);
    return rc;
}

static int64_t h_now_ms(void)
{
    return clock_wall_ms();
}

static int h_on_event(chatd_plugin *p, chatd_event_type type, chatd_event_handler fn)
{
    return loader_on_event(p, type, fn);
}

static int h_on_user_removing(chatd_plugin *p, chatd_user_hook fn)
{
    return loader_on_user_removing(p, fn);
}

static int h_after(chatd_plugin *p, int64_t delay_ms, void (*fn)(void *arg), void *arg)
{
    return loader_after(p, delay_ms, fn, arg);
}

static int h_watch_presence(chatd_plugin *p, int64_t grace_ms)
{
    if (p->initialised || grace_ms < 0)
        return CHATD_EINVAL;
    online_watch(grace_ms);
    return 0;
}

static int h_user_online(int64_t user_id)
{
    return presence_user_online(user_id);
}

static int h_user_entered(int64_t user_id, int64_t channel_id)
{
    return presence_user_in_channel(user_id, channel_id) || bus_entered_lately(channel_id, user_id);
}

/* ---- maps: the core's hmap under the ABI's names ---- */

static chatd_map *h_map_new(int string_keys)
{
    return (chatd_map *)hmap_new(string_keys);
}

static void h_map_free(chatd_map *m)
{
    hmap_free((hmap *)m);
}

static size_t h_map_count(const chatd_map *m)
{
    return hmap_count((const hmap *)m);
}

static int h_map_put(chatd_map *m, int64_t id, const char *key, void *value)
{
    return key ? hmap_put_str((hmap *)m, key, value) : hmap_put_id((hmap *)m, (uint64_t)id, value);
}

static void *h_map_get(const chatd_map *m, int64_t id, const char *key)
{
    return key ? hmap_get_str((const hmap *)m, key) : hmap_get_id((const hmap *)m, (uint64_t)id);
}

static void *h_map_del(chatd_map *m, int64_t id, const char *key)
{
    return key ? hmap_del_str((hmap *)m, key) : hmap_del_id((hmap *)m, (uint64_t)id);
}

struct sweep_call {
    int (*drop)(int64_t id, const char *key, void *value, void *arg);
    void *arg;
};

static int sweep_one(uint64_t id, const char *key, void *value, void *arg)
{
    struct sweep_call *sc = arg;
    return sc->drop((int64_t)id, key, value, sc->arg);
}

static size_t h_map_sweep(chatd_map *m, int (*drop)(int64_t, const char *, void *, void *),
                          void *arg)
{
    struct sweep_call sc = {drop, arg};
    return hmap_sweep((hmap *)m, sweep_one, &sc);
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
    .send_conn = deliver_conn,
    .send_user = deliver_user,
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
    .submit_keyed = h_submit_keyed,
    .push_intent = push_intent_write,
    .push_absent_ref = deliver_push_absent_ref,
    .notify_user_ref = deliver_notify_user_ref,
    .req_session_key = h_req_session_key,
    .observe_us = h_observe_us,
    .event_base = h_event_base,
    .gauge = h_gauge,
    .http_path = h_http_path,
    .http_query = h_http_query,
    .node_stats = nodes_query,
    .session_end_http_then = h_session_end_http_then,
    .session_end_user_then = h_session_end_user_then,
    .on_message_filter = h_on_message_filter,
    .filter_pass = filter_pass,
    .filter_reject = filter_reject,
    .filter_replace = filter_replace,
    .filter_message = filters_run,
    .filter_count = filters_count,
    .request_as = dispatch_as,
    .event_subscribed = loader_subscribed,
    .job_batch = h_job_batch,
    .push_intents = push_intents_write,
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
    .send_channel = deliver_channel,
    .notify_user = deliver_notify_user,
    .push = deliver_push,
    .on_user_removing = h_on_user_removing,
    .data_dir = h_data_dir,
    .backend_name = h_backend_name,
    .push_absent = deliver_push_absent,
    .redis_command = h_redis_command,
    .shared_count = h_shared_count,
    .map_new = h_map_new,
    .map_free = h_map_free,
    .map_count = h_map_count,
    .map_put = h_map_put,
    .map_get = h_map_get,
    .map_del = h_map_del,
    .map_sweep = h_map_sweep,
    .after = h_after,
    .send_channel_and_user = deliver_channel_and_user,
    .watch_presence = h_watch_presence,
    .presence_of = online_query,
    .user_entered = h_user_entered,
    .db_step_later = h_db_step_later,
};

const chatd_host *host_table(const char *dir, struct event_base *base)
{
    data_dir = dir;
    loop_base = base;
    plugins_gone = 0;
    return &host;
}
