#include "link.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "sentinel.h"

struct rlink {
    struct event_base *base;
    const struct pconf *c;
    const char *name;
    int64_t timeout_ms;
    rlink_state_fn on_up, on_down;
    void *arg;
    redisAsyncContext *ac; /* NULL while disconnected */
    int up, stopping, counted;
    int64_t backoff_ms;
    int64_t since_ms;    /* connecting since, or waiting for an answer since */
    size_t waiting;      /* commands sent, not answered */
    const char *dropped; /* why it was closed here */
    char why[128];
    struct event *retry, *watchdog;
};

struct call {
    struct rlink *l;
    rlink_reply_fn fn;
    void *arg;
};

/* Every link of the process, for the outage lines, and where they connect:
 * redis.host, or the master the Sentinels name ("" until one does). */
static struct {
    int links, up;
    int outage, ever_up;
    int64_t outage_since;
    uint64_t losses;
    char host[256];
    int port;
    int where_set, sentinels;
    struct rlink *every[4];
} all;

static void connect_now(struct rlink *l);

uint64_t rlink_losses(void)
{
    return all.losses;
}

static void outage_begins(struct rlink *l, const char *why)
{
    if (all.outage)
        return;
    all.outage = 1;
    all.outage_since = clock_now_ms();
    if (all.ever_up)
        log_msg(CHATD_LOG_WARN, "chatd-push",
                "redis %s:%d: connection lost (%s link: %s); "
                "reconnecting",
                all.host, all.port, l->name, why);
    else
        log_msg(CHATD_LOG_WARN, "chatd-push", "redis %s:%d: cannot connect (%s); retrying",
                all.host, all.port, why);
}

static void retry_later(struct rlink *l)
{
    if (l->stopping)
        return;
    struct timeval tv = {l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000};
    event_add(l->retry, &tv);
    l->backoff_ms =
        l->backoff_ms * 2 > l->c->reconnect_max_ms ? l->c->reconnect_max_ms : l->backoff_ms * 2;
}

/* No more commands on this connection: it is going. */
static void went_down(struct rlink *l)
{
    if (!l->up)
        return;
    l->up = 0;
    all.up--;
    all.losses++;
    if (!l->stopping && l->on_down)
        l->on_down(l->arg, l);
}

/* The connection is gone (ac freed, or being freed by hiredis). */
static void lost(struct rlink *l, const char *why)
{
    went_down(l);
    l->ac = NULL;
    l->waiting = 0;
    if (l->stopping)
        return;
    if (all.sentinels)
        sentinel_ask(); /* the master may have moved */
    outage_begins(l, l->dropped ? l->dropped : why);
    l->dropped = NULL;
    retry_later(l);
}

static void became_up(struct rlink *l)
{
    l->up = 1;
    l->backoff_ms = 100;
    if (++all.up == all.links) {
        if (all.outage)
            log_msg(CHATD_LOG_INFO, "chatd-push", "redis %s:%d: connected again after %.1f s",
                    all.host, all.port, (double)(clock_now_ms() - all.outage_since) / 1000.0);
        else if (!all.ever_up)
            log_msg(CHATD_LOG_INFO, "chatd-push", "redis %s:%d: connected", all.host, all.port);
        all.outage = 0;
        all.ever_up = 1;
    }
    if (l->on_up)
        l->on_up(l->arg, l);
}

/* Up once Redis answers: a Redis stopped (SIGSTOP) or still loading its
 * data accepts connections and answers nothing, or an error. With
 * Sentinels the question is ROLE: a replica, or a master demoted, is not
 * the one to use. */
static void on_pong(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rlink *l = priv;
    redisReply *r = reply;
    if (!r || l->stopping)
        return; /* the connection is going: on_disconnect */
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(l->why, sizeof l->why, "%s", r->str);
        l->dropped = l->why;
        redisAsyncDisconnect(ac);
        return;
    }
    if (all.sentinels && !sentinel_role_is_master(r)) {
        l->dropped = "not the master (ROLE)";
        redisAsyncDisconnect(ac);
        return;
    }
    became_up(l);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rlink *l = ac->data;
    if (status != REDIS_OK) {
        lost(l, ac->errstr[0] ? ac->errstr : "cannot connect"); /* hiredis frees ac */
        return;
    }
    if (redisAsyncCommand(l->ac, on_pong, l, all.sentinels ? "ROLE" : "PING") != REDIS_OK) {
        l->dropped = "cannot send PING";
        redisAsyncDisconnect(l->ac);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rlink *l = ac->data;
    lost(l, status == REDIS_OK ? "closed" : ac->errstr);
}

static void connect_now(struct rlink *l)
{
    if (l->stopping || l->ac || !all.host[0])
        return; /* !all.host[0]: until a Sentinel names the master */
    redisAsyncContext *ac = redisAsyncConnect(all.host, all.port);
    if (!ac || ac->err) {
        outage_begins(l, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        retry_later(l);
        return;
    }
    ac->data = l;
    l->ac = ac;
    l->since_ms = clock_now_ms();
    redisLibeventAttach(ac, l->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    connect_now(arg);
}

/* Close the connection (not from inside its own callbacks); it is made
 * again on the backoff. */
static void drop(struct rlink *l, const char *why)
{
    redisAsyncContext *ac = l->ac;
    l->dropped = why;
    went_down(l);       /* the answers told NULL below find it down */
    redisAsyncFree(ac); /* pending answers: NULL; a connected one calls on_disconnect */
    if (l->ac == ac)
        lost(l, l->dropped);
}

/* A connect or an answer overdue: close the connection and make it again. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct rlink *l = arg;
    if (!l->ac || (l->up && !l->waiting) || clock_now_ms() - l->since_ms <= l->timeout_ms)
        return;
    drop(l, l->up ? "no answer in time" : "no connection in time");
}

/* The master the Sentinels name: every link moves there at once when it is new. */
static void on_master(const char *host, int port)
{
    if (strcmp(host, all.host) == 0 && port == all.port)
        return; /* a link that is down tries it again on its backoff */
    if (all.host[0])
        log_msg(CHATD_LOG_WARN, "chatd-push", "redis: following the master from %s:%d to %s:%d",
                all.host, all.port, host, port);
    snprintf(all.host, sizeof all.host, "%s", host);
    all.port = port;
    for (size_t i = 0; i < sizeof all.every / sizeof all.every[0]; i++) {
        struct rlink *l = all.every[i];
        if (!l)
            continue;
        if (l->ac)
            drop(l, "the master moved");
        event_del(l->retry);
        l->backoff_ms = 100;
        connect_now(l);
    }
}

/* Where links connect, set once for the process by its first link. */
static int where_init(struct event_base *base, const struct pconf *c)
{
    if (all.where_set)
        return 0;
    all.where_set = 1;
    if ((all.sentinels = sentinel_enabled(c->core)))
        return sentinel_init(base, c->core, on_master);
    snprintf(all.host, sizeof all.host, "%s", c->redis_host);
    all.port = (int)c->redis_port;
    return 0;
}

/* Keep (on) or forget (off) l among the links a new master moves. */
static int every_set(struct rlink *l, int on)
{
    for (size_t i = 0; i < sizeof all.every / sizeof all.every[0]; i++)
        if (all.every[i] == (on ? NULL : l)) {
            all.every[i] = on ? l : NULL;
            return 0;
        }
    return -1;
}

struct rlink *rlink_new(struct event_base *base, const struct pconf *c, const char *name,
                        int64_t timeout_ms, rlink_state_fn up, rlink_state_fn down, void *arg)
{
    struct rlink *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    *l = (struct rlink){.base = base,
                        .c = c,
                        .name = name,
                        .timeout_ms = timeout_ms,
                        .on_up = up,
                        .on_down = down,
                        .arg = arg,
                        .backoff_ms = 100};
    int64_t tick = timeout_ms / 4 > 10 ? timeout_ms / 4 : 10;
    struct timeval tv = {tick / 1000, (tick % 1000) * 1000};
    if (!(l->retry = evtimer_new(base, on_retry, l)) ||
        !(l->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, l)) ||
        event_add(l->watchdog, &tv) < 0 || where_init(base, c) < 0 || every_set(l, 1) < 0) {
        rlink_free(l);
        return NULL;
    }
    all.links++;
    l->counted = 1;
    connect_now(l);
    return l;
}

int rlink_is_up(const struct rlink *l)
{
    return l && l->up && l->ac;
}

static void answered(redisAsyncContext *ac, void *reply, void *priv)
{
    struct call *call = priv;
    struct rlink *l = call->l;
    redisReply *r = reply;
    if (!reply)
        went_down(l);
    else if (all.sentinels && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "READONLY", 8) &&
             l->up && l->ac == ac) {
        l->dropped = "READONLY: the master was demoted";
        redisAsyncDisconnect(ac); /* after this callback; made again on the new master */
    }
    if (l->waiting)
        l->waiting--;
    l->since_ms = clock_now_ms();
    rlink_reply_fn fn = call->fn;
    void *arg = call->arg;
    free(call);
    fn(arg, reply);
}

int rlink_cmd(struct rlink *l, int argc, const char **argv, const size_t *lens, rlink_reply_fn fn,
              void *arg)
{
    if (!rlink_is_up(l) || l->stopping)
        return -1;
    struct call *call = malloc(sizeof *call);
    if (!call)
        return -1;
    *call = (struct call){l, fn, arg};
    if (redisAsyncCommandArgv(l->ac, answered, call, argc, argv, lens) != REDIS_OK) {
        free(call);
        return -1;
    }
    if (l->waiting++ == 0)
        l->since_ms = clock_now_ms();
    return 0;
}

int rlink_cmdv(struct rlink *l, int argc, const char **argv, rlink_reply_fn fn, void *arg)
{
    size_t few[16] = {0}, *lens = argc <= 16 ? few : malloc((size_t)argc * sizeof *lens);
    if (!lens)
        return -1;
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    int rc = rlink_cmd(l, argc, argv, lens, fn, arg);
    if (lens != few)
        free(lens);
    return rc;
}

void rlink_free(struct rlink *l)
{
    if (!l)
        return;
    l->stopping = 1;
    if (l->ac) {
        if (l->up)
            all.up--;
        l->up = 0;
        redisAsyncFree(l->ac);
        l->ac = NULL;
    }
    every_set(l, 0);
    if (l->counted)
        all.links--;
    if (!all.links && all.where_set) { /* the last link: the Sentinels too */
        if (all.sentinels)
            sentinel_free();
        all.where_set = all.sentinels = 0;
        all.host[0] = '\0';
    }
    if (l->retry)
        event_free(l->retry);
    if (l->watchdog)
        event_free(l->watchdog);
    free(l);
}
