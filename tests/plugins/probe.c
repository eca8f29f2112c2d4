/*
 * A test plugin for the dispatch contract:
 *   PROBE_PENDING {"delayMs"}  answered later from another thread via post()
 *   PROBE_DECLINE              declined, so the next handler (or "unknown type") answers
 *   PROBE_SILENT               answered with nothing (CHATD_OK, no reply)
 *   PROBE_CPU {"n"}            a CPU job computes the sum 1..n on a worker
 *   POST /probe/internal       answered 500 INTERNAL (the core adds the reference)
 *   GET /probe/hello           an HTTP route of a plugin: 200 {"hello": "probe"}
 *   PROBE_REDIS {"args": [..]} one Redis command through host->redis_command:
 *                              PROBE_REDIS_RESPONSE {"status"} (0, or CHATD_EUNAVAIL)
 *   PROBE_FAIL_REMOVAL {"on"}  make its user-removal hook fail (or pass again)
 *   PROBE_WATCH {"channelId"}  from now on, every CONN_CLOSED sends PROBE_GONE
 *                              {"connId"} to the WebSockets entered in that channel
 * and it counts CONN_OPENED / CONN_CLOSED / USER_REGISTERED / CHANNEL_CHANGED
 * events and user removals (its hook runs inside each removal's
 * transaction), which PROBE_EVENTS reports.
 */
#include <chatd/plugin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct probe {
    chatd_plugin *p;
    const chatd_host *host;
    long opened, closed, registered, channel_changed;
    int bad_event_refused; /* on_event refused a type past the last */
    atomic_long removed;   /* user-removal hooks run (worker threads) */
    atomic_int fail_removal;
    int64_t watch_channel;
};

static struct probe *g;

struct later {
    chatd_req *req;
    long delay_ms;
    int64_t n, sum;
};

static void answer_later(void *arg)
{
    struct later *l = arg;
    g->host->reply(l->req, "PROBE_PENDING_RESPONSE",
                   json_pack("{s:I}", "delayMs", (json_int_t)l->delay_ms));
    free(l);
}

static void *sleeper(void *arg)
{
    struct later *l = arg;
    struct timespec ts = {l->delay_ms / 1000, (l->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    g->host->post(answer_later, l); /* the one call allowed off the loop */
    return NULL;
}

static int on_pending(chatd_req *req, const json_t *msg, void *state)
{
    (void)state;
    struct later *l = calloc(1, sizeof *l);
    pthread_t t;
    if (!l)
        return CHATD_ENOMEM;
    l->req = req;
    l->delay_ms = (long)json_integer_value(json_object_get(msg, "delayMs"));
    if (l->delay_ms < 0 || l->delay_ms > 5000)
        l->delay_ms = 0;
    if (pthread_create(&t, NULL, sleeper, l) != 0) {
        free(l);
        return CHATD_EINTERNAL;
    }
    pthread_detach(t);
    return CHATD_PENDING;
}

static int on_decline(chatd_req *req, const json_t *msg, void *state)
{
    (void)req, (void)msg, (void)state;
    return CHATD_DECLINED;
}

static int on_silent(chatd_req *req, const json_t *msg, void *state)
{
    (void)req, (void)msg, (void)state;
    return CHATD_OK;
}

static int cpu_run(chatd_db *db, void *arg)
{
    struct later *l = arg;
    (void)db;
    l->sum = 0;
    for (int64_t i = 1; i <= l->n; i++)
        l->sum += i;
    return 0;
}

static void cpu_done(void *arg, int status)
{
    struct later *l = arg;
    if (status < 0)
        g->host->error(l->req, CHATD_ERR_INTERNAL, "cpu job failed");
    else
        g->host->reply(l->req, "PROBE_CPU_RESPONSE", json_pack("{s:I}", "sum", (json_int_t)l->sum));
    free(l);
}

static int on_cpu(chatd_req *req, const json_t *msg, void *state)
{
    struct probe *pr = state;
    struct later *l = calloc(1, sizeof *l);
    if (!l)
        return CHATD_ENOMEM;
    l->req = req;
    l->n = json_integer_value(json_object_get(msg, "n"));
    if (pr->host->submit(pr->p, CHATD_JOB_CPU, cpu_run, cpu_done, l) < 0) {
        free(l);
        return CHATD_EINTERNAL;
    }
    return CHATD_PENDING;
}

static int on_events(chatd_req *req, const json_t *msg, void *state)
{
    struct probe *pr = state;
    (void)msg;
    pr->host->reply(req, "PROBE_EVENTS_RESPONSE",
                    json_pack("{s:i, s:i, s:i, s:i, s:i, s:i}", "opened", (int)pr->opened, "closed",
                              (int)pr->closed, "registered", (int)pr->registered, "channelChanged",
                              (int)pr->channel_changed, "removed", (int)atomic_load(&pr->removed),
                              "badEventRefused", pr->bad_event_refused));
    return CHATD_OK;
}

static int on_fail_removal(chatd_req *req, const json_t *msg, void *state)
{
    struct probe *pr = state;
    atomic_store(&pr->fail_removal, json_is_true(json_object_get(msg, "on")));
    pr->host->reply(req, "PROBE_FAIL_REMOVAL_RESPONSE", NULL);
    return CHATD_OK;
}

/* Inside the transaction that removes a user: failing rolls the removal back. */
static int on_removing(chatd_db *db, int64_t user_id, void *state)
{
    struct probe *pr = state;
    (void)db, (void)user_id;
    if (atomic_load(&pr->fail_removal))
        return CHATD_EINTERNAL;
    atomic_fetch_add(&pr->removed, 1);
    return 0;
}

static int on_watch(chatd_req *req, const json_t *msg, void *state)
{
    struct probe *pr = state;
    const json_t *id = json_object_get(msg, "channelId");
    pr->watch_channel = json_integer_value(json_is_object(id) ? json_object_get(id, "id") : id);
    pr->host->reply(req, "PROBE_WATCH_RESPONSE", NULL);
    return CHATD_OK;
}

struct redis_req {
    chatd_req *req;
};

static void redis_answered(void *arg, int status)
{
    struct redis_req *r = arg;
    g->host->reply(r->req, "PROBE_REDIS_RESPONSE", json_pack("{s:i}", "status", status));
    free(r);
}

static int on_redis(chatd_req *req, const json_t *msg, void *state)
{
    struct probe *pr = state;
    const json_t *args = json_object_get(msg, "args");
    size_t n = json_array_size(args);
    const char *argv[16];
    size_t lens[16];
    if (n == 0 || n > 16) {
        pr->host->error(req, CHATD_ERR_BAD_REQUEST, "args: 1 to 16 strings");
        return CHATD_OK;
    }
    for (size_t i = 0; i < n; i++) {
        argv[i] = json_string_value(json_array_get(args, i));
        lens[i] = argv[i] ? json_string_length(json_array_get(args, i)) : 0;
        if (!argv[i]) {
            pr->host->error(req, CHATD_ERR_BAD_REQUEST, "args: 1 to 16 strings");
            return CHATD_OK;
        }
    }
    struct redis_req *r = malloc(sizeof *r);
    if (!r)
        return CHATD_ENOMEM;
    r->req = req;
    int rc = pr->host->redis_command((int)n, argv, lens, redis_answered, r);
    if (rc < 0) { /* not sent: done will not be called */
        free(r);
        pr->host->reply(req, "PROBE_REDIS_RESPONSE", json_pack("{s:i}", "status", rc));
        return CHATD_OK;
    }
    return CHATD_PENDING;
}

static int on_http_hello(chatd_http *req, void *state)
{
    struct probe *pr = state;
    pr->host->http_reply(req, 200, json_pack("{s:s}", "hello", "probe"), NULL);
    return CHATD_OK;
}

static void on_event(const chatd_event *ev, void *state)
{
    struct probe *pr = state;
    if (ev->type == CHATD_EVENT_CONN_OPENED)
        pr->opened++;
    else if (ev->type == CHATD_EVENT_CONN_CLOSED)
        pr->closed++;
    else if (ev->type == CHATD_EVENT_USER_REGISTERED)
        pr->registered++;
    else if (ev->type == CHATD_EVENT_CHANNEL_CHANGED)
        pr->channel_changed++;
    /* A plugin that sends from its CONN_CLOSED handler, as a fan-out closes a
     * slow reader: the core tells it outside that fan-out's loop. */
    if (ev->type == CHATD_EVENT_CONN_CLOSED && pr->watch_channel > 0)
        pr->host->send_channel(pr->watch_channel, 0, "PROBE_GONE",
                               json_pack("{s:I}", "connId", (json_int_t)ev->conn_id));
}

static int on_http_internal(chatd_http *req, void *state)
{
    struct probe *pr = state;
    pr->host->http_error(req, CHATD_ERR_INTERNAL, "probe detail for the log");
    return CHATD_OK;
}

static int probe_init(chatd_plugin *p, const chatd_host *host, const json_t *config, void **state)
{
    (void)config;
    struct probe *pr = calloc(1, sizeof *pr);
    if (!pr)
        return CHATD_ENOMEM;
    pr->p = p;
    pr->host = host;
    *state = g = pr;
    if (host->on_message(p, "PROBE_PENDING", on_pending) < 0 ||
        host->on_message(p, "PROBE_DECLINE", on_decline) < 0 ||
        host->on_message(p, "PROBE_SILENT", on_silent) < 0 ||
        host->on_message(p, "PROBE_CPU", on_cpu) < 0 ||
        host->on_message(p, "PROBE_EVENTS", on_events) < 0 ||
        host->on_message(p, "ECHO_REQUEST", on_decline) < 0 ||
        host->http_route(p, "POST", "/probe/internal", 0, on_http_internal) < 0 ||
        host->http_route(p, "GET", "/probe/hello", 0, on_http_hello) < 0 ||
        host->on_message(p, "PROBE_FAIL_REMOVAL", on_fail_removal) < 0 ||
        host->on_message(p, "PROBE_WATCH", on_watch) < 0 ||
        host->on_message(p, "PROBE_REDIS", on_redis) < 0 ||
        host->on_user_removing(p, on_removing) < 0 ||
        host->on_event(p, CHATD_EVENT_CONN_OPENED, on_event) < 0 ||
        host->on_event(p, CHATD_EVENT_CONN_CLOSED, on_event) < 0 ||
        host->on_event(p, CHATD_EVENT_USER_REGISTERED, on_event) < 0 ||
        host->on_event(p, CHATD_EVENT_CHANNEL_CHANGED, on_event) < 0)
        return CHATD_EINVAL;
    /* The table holds every type and no more. */
    pr->bad_event_refused =
        host->on_event(p, (chatd_event_type)(CHATD_EVENT_RELOAD + 1), on_event) < 0 &&
        host->on_event(p, (chatd_event_type)0, on_event) < 0;
    return 0;
}

static void probe_cleanup(void *state)
{
    free(state);
    g = NULL;
}

static const chatd_plugin_desc probe_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "probe",          .version = "1.0",
    .init = probe_init,     .cleanup = probe_cleanup,
};

CHATD_PLUGIN(probe_desc)
