#include "link.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

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

/* Every link of the process, for the outage lines. */
static struct {
    int links, up;
    int outage, ever_up;
    int64_t outage_since;
    uint64_t losses;
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
                "redis %s:%lld: connection lost (%s link: %s); "
                "reconnecting",
                l->c->redis_host, (long long)l->c->redis_port, l->name, why);
    else
        log_msg(CHATD_LOG_WARN, "chatd-push", "redis %s:%lld: cannot connect (%s); retrying",
                l->c->redis_host, (long long)l->c->redis_port, why);
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
            log_msg(CHATD_LOG_INFO, "chatd-push", "redis %s:%lld: connected again after %.1f s",
                    l->c->redis_host, (long long)l->c->redis_port,
                    (double)(clock_now_ms() - all.outage_since) / 1000.0);
        else if (!all.ever_up)
            log_msg(CHATD_LOG_INFO, "chatd-push", "redis %s:%lld: connected", l->c->redis_host,
                    (long long)l->c->redis_port);
        all.outage = 0;
        all.ever_up = 1;
    }
    if (l->on_up)
        l->on_up(l->arg, l);
}

/* Up once Redis answers: a Redis stopped (SIGSTOP) or still loading its
 * data accepts connections and answers nothing, or an error. */
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
    became_up(l);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rlink *l = ac->data;
    if (status != REDIS_OK) {
        lost(l, ac->errstr[0] ? ac->errstr : "cannot connect"); /* hiredis frees ac */
        return;
    }
    if (redisAsyncCommand(l->ac, on_pong, l, "PING") != REDIS_OK) {
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
    if (l->stopping || l->ac)
        return;
    redisAsyncContext *ac = redisAsyncConnect(l->c->redis_host, (int)l->c->redis_port);
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

/* A connect or an answer overdue: close the connection and make it again. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct rlink *l = arg;
    if (!l->ac || (l->up && !l->waiting) || clock_now_ms() - l->since_ms <= l->timeout_ms)
        return;
    redisAsyncContext *ac = l->ac;
    l->dropped = l->up ? "no answer in time" : "no connection in time";
    went_down(l);       /* the answers told NULL below find it down */
    redisAsyncFree(ac); /* pending answers: NULL; a connected one calls on_disconnect */
    if (l->ac == ac)
        lost(l, l->dropped);
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
        event_add(l->watchdog, &tv) < 0) {
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
    (void)ac;
    struct call *call = priv;
    struct rlink *l = call->l;
    if (!reply)
        went_down(l);
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
    if (l->counted)
        all.links--;
    if (l->retry)
        event_free(l->retry);
    if (l->watchdog)
        event_free(l->watchdog);
    free(l);
}
