#include "sentinel.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatd/plugin.h"
#include "config.h"
#include "config_check.h"
#include "log.h"
#include "metrics.h"

#define ASK_TIMEOUT_MS 1000 /* a Sentinel that has not answered by then is skipped */
#define AGAIN_MS 1000       /* the next round of asks after every Sentinel failed */

static struct {
    struct event_base *base;
    const struct settings *s;
    sentinel_master_fn master;
    int n;       /* Sentinels configured */
    int ask_i;   /* the one to ask next */
    int watch_i; /* the one to watch next */
    /* the ask on its way: its connection, and how many were tried this round */
    redisAsyncContext *ask;
    unsigned ask_gen; /* the answers of an ask given up on are ignored */
    int tried, warned;
    struct event *ask_timer, *ask_again; /* its timeout; the next Sentinel */
    redisAsyncContext *watch;            /* subscribed to +switch-master */
    struct event *watch_retry;
    int stopping;
} sn;

int sentinel_enabled(const struct settings *s)
{
    return s && s->redis_sentinels && s->redis_sentinels[0];
}

int sentinel_parse_switch(const char *msg, const char *name, char *host, size_t hostlen, int *port)
{
    char got[128], old_host[256], new_host[256];
    int old_port, new_port;
    if (!msg ||
        sscanf(msg, "%127s %255s %d %255s %d", got, old_host, &old_port, new_host, &new_port) !=
            5 ||
        strcmp(got, name) != 0 || new_port < 1 || new_port > 65535 || strlen(new_host) >= hostlen)
        return CHATD_EINVAL;
    snprintf(host, hostlen, "%s", new_host);
    *port = new_port;
    return 0;
}

int sentinel_role_is_master(const struct redisReply *r)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
}

/* Attach a new connection to Sentinel i, or NULL. */
static redisAsyncContext *connect_to(int i)
{
    char host[256];
    int port;
    if (config_host_port(sn.s->redis_sentinels[i], host, sizeof host, &port) < 0)
        return NULL;
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (ac && !ac->err && redisLibeventAttach(ac, sn.base) == REDIS_OK)
        return ac;
    if (ac)
        redisAsyncFree(ac);
    return NULL;
}

static void after_ms(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(ev, &tv);
}

/* ---- asking ---- */

static void ask_next(void);

/* Done with the ask on its way (answered or given up on): its connection
 * goes, closed after this callback, or freed at once outside one (its
 * callbacks then see a stale generation). */
static void ask_end(int in_callback)
{
    sn.ask_gen++;
    event_del(sn.ask_timer);
    redisAsyncContext *ac = sn.ask;
    sn.ask = NULL;
    if (ac && in_callback)
        redisAsyncDisconnect(ac);
    else if (ac)
        redisAsyncFree(ac);
}

/* This Sentinel could not say: the next one, at once (not inside hiredis),
 * or after a pause once each was asked. */
static void ask_failed(int in_callback)
{
    ask_end(in_callback);
    sn.ask_i = (sn.ask_i + 1) % sn.n;
    if (++sn.tried < sn.n) {
        after_ms(sn.ask_again, 0);
        return;
    }
    sn.tried = 0;
    if (!sn.warned++)
        log_warn("redis: no Sentinel names the master '%s'; asking again every second",
                 sn.s->redis_master_name);
    after_ms(sn.ask_again, AGAIN_MS);
}

static void on_answer(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    (void)ac;
    if ((unsigned)(uintptr_t)priv != sn.ask_gen || !sn.ask)
        return;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        atoi(r->element[1]->str) < 1 || atoi(r->element[1]->str) > 65535) {
        ask_failed(1);
        return;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", r->element[0]->str);
    int port = atoi(r->element[1]->str);
    sn.tried = 0;
    if (sn.warned)
        log_info("redis: a Sentinel names the master '%s' again", sn.s->redis_master_name);
    sn.warned = 0;
    ask_end(1);
    sn.master(host, port);
}

static void on_ask_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (sn.ask)
        ask_failed(0);
}

static void on_ask_again(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    ask_next();
}

static void ask_next(void)
{
    if (sn.stopping || sn.ask)
        return;
    if (!(sn.ask = connect_to(sn.ask_i))) {
        ask_failed(0);
        return;
    }
    after_ms(sn.ask_timer, ASK_TIMEOUT_MS);
    METRICS_ADD("redis_sentinel_asks", 1);
    if (redisAsyncCommand(sn.ask, on_answer, (void *)(uintptr_t)sn.ask_gen,
                          "SENTINEL get-master-addr-by-name %s",
                          sn.s->redis_master_name) != REDIS_OK)
        ask_failed(0);
}

void sentinel_ask(void)
{
    if (!sn.stopping && sn.n && !sn.ask && !event_pending(sn.ask_again, EV_TIMEOUT, NULL))
        ask_next();
}

/* ---- watching for failovers ---- */

static void watch_elsewhere(void)
{
    sn.watch_i = (sn.watch_i + 1) % sn.n;
    if (!sn.stopping)
        after_ms(sn.watch_retry, AGAIN_MS);
}

static void on_switch(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    (void)ac, (void)priv;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(r->element[0]->str, "subscribe") == 0) {
        sentinel_ask(); /* a failover may have passed while nobody listened */
        return;
    }
    char host[256];
    int port;
    if (r->element[2]->type != REDIS_REPLY_STRING ||
        sentinel_parse_switch(r->element[2]->str, sn.s->redis_master_name, host, sizeof host,
                              &port) < 0)
        return;
    log_warn("redis: the Sentinels moved the master '%s' to %s:%d", sn.s->redis_master_name, host,
             port);
    sn.master(host, port);
}

static void on_watch_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    if (ac != sn.watch)
        return;
    sn.watch = NULL; /* freed by hiredis after this callback */
    watch_elsewhere();
}

static void on_watch_connect(const redisAsyncContext *ac, int status)
{
    if (ac != sn.watch || status == REDIS_OK)
        return;
    sn.watch = NULL; /* freed by hiredis after a failed connect */
    watch_elsewhere();
}

static void watch_start(void)
{
    if (sn.stopping || sn.watch)
        return;
    if (!(sn.watch = connect_to(sn.watch_i))) {
        watch_elsewhere();
        return;
    }
    redisAsyncSetConnectCallback(sn.watch, on_watch_connect);
    redisAsyncSetDisconnectCallback(sn.watch, on_watch_disconnect);
    redisAsyncCommand(sn.watch, on_switch, NULL, "SUBSCRIBE +switch-master");
}

static void on_watch_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    watch_start();
}

int sentinel_init(struct event_base *base, const struct settings *s, sentinel_master_fn master)
{
    memset(&sn, 0, sizeof sn);
    sn.base = base;
    sn.s = s;
    sn.master = master;
    while (s->redis_sentinels[sn.n])
        sn.n++;
    if (!(sn.ask_timer = evtimer_new(base, on_ask_timeout, NULL)) ||
        !(sn.ask_again = evtimer_new(base, on_ask_again, NULL)) ||
        !(sn.watch_retry = evtimer_new(base, on_watch_retry, NULL)))
        return CHATD_ENOMEM;
    log_info("redis: the master '%s' where %d Sentinel(s) name it", s->redis_master_name, sn.n);
    watch_start();
    ask_next();
    return 0;
}

void sentinel_free(void)
{
    sn.stopping = 1;
    sn.ask_gen++;
    if (sn.ask)
        redisAsyncFree(sn.ask);
    sn.ask = NULL;
    if (sn.watch) {
        redisAsyncContext *ac = sn.watch;
        sn.watch = NULL;
        redisAsyncFree(ac);
    }
    struct event **evs[] = {&sn.ask_timer, &sn.ask_again, &sn.watch_retry};
    for (int i = 0; i < 3; i++)
        if (*evs[i]) {
            event_free(*evs[i]);
            *evs[i] = NULL;
        }
}
