#include "redis.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hmap.h"
#include "log.h"
#include "metrics.h"
#include "sentinel.h"

struct link {
    const char *name;      /* "commands" or "subscriptions" */
    redisAsyncContext *ac; /* NULL while disconnected */
    int up;                /* connected and usable */
    int backoff_ms;
    struct event *retry;
};

static struct {
    struct event_base *base;
    const struct settings *s;
    char host[256]; /* where the links connect: redis.host, or the master the Sentinels name */
    int port;       /* ("" while no Sentinel has named it yet) */
    int sentinels;  /* redis.sentinels set: each connection checks it reached the master */
    struct event *on_up[8];
    int n_on_up;
    struct link cmd, sub;
    unsigned sub_epoch; /* counts the subscription link's connections */
    hmap *topics;       /* topic -> interest count (as an integer) */
    struct route {
        char prefix[64]; /* full topic prefix, redis.prefix included */
        void (*handler)(const char *topic, const char *data, size_t len);
    } routes[8];
    int n_routes;
    int stopping;
} rd;

static void link_connect(struct link *l);

static struct link *link_of(const redisAsyncContext *ac)
{
    return ac == rd.cmd.ac ? &rd.cmd : ac == rd.sub.ac ? &rd.sub : NULL;
}

static void schedule_retry(struct link *l)
{
    if (rd.stopping)
        return;
    struct timeval tv = {l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000};
    event_add(l->retry, &tv);
    l->backoff_ms = l->backoff_ms * 2 > (int)rd.s->redis_reconnect_max_ms
                        ? (int)rd.s->redis_reconnect_max_ms
                        : l->backoff_ms * 2;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    link_connect(arg);
}

static void on_sub_message(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    (void)ac, (void)priv;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0)
        return; /* subscribe / unsubscribe confirmations */
    METRICS_ADD("redis_messages_in", 1);
    const char *topic = r->element[1]->str;
    for (int i = 0; i < rd.n_routes; i++)
        if (strncmp(topic, rd.routes[i].prefix, strlen(rd.routes[i].prefix)) == 0) {
            rd.routes[i].handler(topic, r->element[2]->str, r->element[2]->len);
            return;
        }
}

/* Subscribe the subscription link to every topic someone is interested in. */
static void resubscribe(void)
{
    size_t pos = 0;
    const char *topic;
    while (hmap_iter(rd.topics, &pos, NULL, &topic, NULL))
        redisAsyncCommand(rd.sub.ac, on_sub_message, NULL, "SUBSCRIBE %s", topic);
}

static void link_up(struct link *l)
{
    l->up = 1;
    l->backoff_ms = 100;
    log_info("redis %s: connected to %s:%d", l->name, rd.host, rd.port);
    if (l == &rd.sub) {
        resubscribe();
        rd.sub_epoch++; /* what was published while it was down never came */
        return;
    }
    /* A master new after a failover may lack this node's last writes. */
    for (int i = 0; i < rd.n_on_up; i++)
        event_active(rd.on_up[i], 0, 1); /* not EV_TIMEOUT: a heartbeat's period restarts now */
}

/* The link's Redis is what the Sentinels last named; in use only if it
 * says it is a master (a demoted one, or a replica, refuses writes). */
static void on_role(redisAsyncContext *ac, void *reply, void *priv)
{
    struct link *l = priv;
    redisReply *r = reply;
    if (!r || l->ac != ac)
        return; /* the connection is going: on_disconnect */
    if (sentinel_role_is_master(r)) {
        link_up(l);
        return;
    }
    log_warn("redis %s: %s:%d is not the master (ROLE: %s); asking the Sentinels again", l->name,
             rd.host, rd.port,
             r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                     r->element[0]->type == REDIS_REPLY_STRING
                 ? r->element[0]->str
             : r->type == REDIS_REPLY_ERROR ? r->str
                                            : "?");
    redisAsyncDisconnect(ac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct link *l = link_of(ac);
    if (!l)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after a failed connect */
        log_warn("redis %s: cannot connect to %s:%d: %s", l->name, rd.host, rd.port, ac->errstr);
        l->ac = NULL;
        if (rd.sentinels)
            sentinel_ask();
        schedule_retry(l);
        return;
    }
    if (!rd.sentinels) {
        link_up(l);
        return;
    }
    if (redisAsyncCommand(l->ac, on_role, l, "ROLE") != REDIS_OK)
        redisAsyncDisconnect(l->ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct link *l = link_of(ac);
    if (!l)
        return;
    l->ac = NULL; /* freed by hiredis after this callback */
    l->up = 0;
    if (rd.stopping)
        return;
    log_warn("redis %s: connection lost (%s); reconnecting", l->name,
             status == REDIS_OK ? "closed" : ac->errstr);
    metrics_count("redis_disconnects", 1);
    if (rd.sentinels)
        sentinel_ask(); /* the master may have moved */
    schedule_retry(l);
}

/* The master the Sentinels name (again, or a new one): the links move to
 * it at once when it is new. */
static void on_master(const char *host, int port)
{
    if (strcmp(host, rd.host) == 0 && port == rd.port)
        return; /* a link that is down tries it again on its backoff */
    if (rd.host[0]) {
        log_warn("redis: following the master from %s:%d to %s:%d", rd.host, rd.port, host, port);
        METRICS_ADD("redis_failovers", 1);
    }
    snprintf(rd.host, sizeof rd.host, "%s", host);
    rd.port = port;
    struct link *links[] = {&rd.cmd, &rd.sub};
    for (int i = 0; i < 2; i++) {
        struct link *l = links[i];
        redisAsyncContext *ac = l->ac;
        l->ac = NULL; /* its callbacks, told NULL by the free, no longer find the link */
        l->up = 0;
        if (ac)
            redisAsyncFree(ac); /* even mid-connect, or with answers owed by a hung master */
        event_del(l->retry);
        l->backoff_ms = 100;
        link_connect(l);
    }
}

static void link_connect(struct link *l)
{
    if (rd.stopping || l->ac || !rd.host[0])
        return; /* !rd.host[0]: until a Sentinel names the master */
    redisAsyncContext *ac = redisAsyncConnect(rd.host, rd.port);
    if (!ac || ac->err) {
        log_warn("redis %s: %s", l->name, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(l);
        return;
    }
    l->ac = ac;
    redisLibeventAttach(ac, rd.base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

int redis_init(struct event_base *base, const struct settings *s)
{
    rd.base = base;
    rd.s = s;
    if (!redis_enabled())
        return 0;
    if (!(rd.topics = hmap_new(1)))
        return CHATD_ENOMEM;
    rd.sentinels = sentinel_enabled(s);
    if (!rd.sentinels) {
        snprintf(rd.host, sizeof rd.host, "%s", s->redis_host);
        rd.port = (int)s->redis_port;
    }
    rd.cmd.name = "commands";
    rd.sub.name = "subscriptions";
    struct link *links[] = {&rd.cmd, &rd.sub};
    for (int i = 0; i < 2; i++) {
        links[i]->backoff_ms = 100;
        if (!(links[i]->retry = event_new(base, -1, 0, on_retry, links[i])))
            return CHATD_ENOMEM;
        link_connect(links[i]);
    }
    if (!rd.sentinels)
        return 0;
    METRICS_ADD("redis_failovers", 0); /* the series is there from the start */
    return sentinel_init(base, s, on_master);
}

void redis_free(void)
{
    rd.stopping = 1;
    if (rd.sentinels)
        sentinel_free();
    struct link *links[] = {&rd.cmd, &rd.sub};
    for (int i = 0; i < 2; i++) {
        if (links[i]->ac)
            redisAsyncFree(links[i]->ac); /* runs pending callbacks with NULL */
        links[i]->ac = NULL;
        if (links[i]->retry)
            event_free(links[i]->retry);
        links[i]->retry = NULL;
    }
    hmap_free(rd.topics);
    rd.topics = NULL;
}

int redis_enabled(void)
{
    return rd.s && (rd.s->redis_host[0] != '\0' || sentinel_enabled(rd.s));
}

int redis_ready(void)
{
    return rd.cmd.up;
}

int redis_sub_ready(void)
{
    return rd.sub.up;
}

unsigned redis_sub_epoch(void)
{
    return rd.sub_epoch;
}

const char *redis_prefix(void)
{
    return rd.s->redis_prefix;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_call *call = priv;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR) {
        log_warn("redis: %s", r->str);
        /* A master demoted under the link: the Sentinels know the new one. */
        if (rd.sentinels && strncmp(r->str, "READONLY", 8) == 0 && ac == rd.cmd.ac && rd.cmd.up) {
            rd.cmd.up = 0;
            redisAsyncDisconnect(ac);
        }
        r = NULL;
    }
    if (call)
        call->fn(r, call);
}

/* Send one command through format or argv (exactly one given) on the command link. */
static int send_cmd(struct redis_call *call, const char *fmt, va_list *ap, int argc,
                    const char **argv, const size_t *argvlen)
{
    if (!rd.cmd.up || !rd.cmd.ac)
        return CHATD_EUNAVAIL;
    /* on_reply for every command, answered or not: it logs a command refused */
    int rc = fmt ? redisvAsyncCommand(rd.cmd.ac, on_reply, call, fmt, *ap)
                 : redisAsyncCommandArgv(rd.cmd.ac, on_reply, call, argc, argv, argvlen);
    if (rc != REDIS_OK)
        return CHATD_EUNAVAIL;
    METRICS_ADD("redis_commands", 1);
    return 0;
}

int redis_cmd(struct redis_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = send_cmd(call, fmt, &ap, 0, NULL, NULL);
    va_end(ap);
    return rc;
}

int redis_cmdv(struct redis_call *call, int argc, const char **argv, const size_t *argvlen)
{
    return send_cmd(call, NULL, NULL, argc, argv, argvlen);
}

int redis_on_up(struct event *ev)
{
    if (rd.n_on_up == (int)(sizeof rd.on_up / sizeof rd.on_up[0]))
        return CHATD_ENOMEM;
    rd.on_up[rd.n_on_up++] = ev;
    return 0;
}

int redis_on_message(const char *prefix,
                     void (*handler)(const char *topic, const char *data, size_t len))
{
    if (rd.n_routes == (int)(sizeof rd.routes / sizeof rd.routes[0]))
        return CHATD_ENOMEM;
    struct route *r = &rd.routes[rd.n_routes++];
    snprintf(r->prefix, sizeof r->prefix, "%s%s", rd.s->redis_prefix, prefix);
    r->handler = handler;
    return 0;
}

void redis_subscribe(const char *topic)
{
    if (!rd.topics)
        return;
    intptr_t n = (intptr_t)hmap_get_str(rd.topics, topic);
    if (hmap_put_str(rd.topics, topic, (void *)(n + 1)) < 0)
        return;
    if (n == 0 && rd.sub.up)
        redisAsyncCommand(rd.sub.ac, on_sub_message, NULL, "SUBSCRIBE %s", topic);
}

void redis_unsubscribe(const char *topic)
{
    if (!rd.topics)
        return;
    intptr_t n = (intptr_t)hmap_get_str(rd.topics, topic);
    if (n > 1) {
        hmap_put_str(rd.topics, topic, (void *)(n - 1));
        return;
    }
    hmap_del_str(rd.topics, topic);
    if (n == 1 && rd.sub.up)
        redisAsyncCommand(rd.sub.ac, NULL, NULL, "UNSUBSCRIBE %s", topic);
}
