/*
 * Login sessions in Redis, for many nodes: <prefix>sess:<key> holds
 * "<user id> <username>" with the session's TTL, <prefix>usess:<user id> the
 * user's keys. Ends and refreshes are published on <prefix>sess so every
 * node closes or refreshes the WebSockets it holds.
 *
 * An end is confirmed: it is published as "end:<key>:<node>:<nonce>" (or
 * "user:<id>:<node>:<nonce>"), PUBLISH answers how many subscribers got
 * it, and each node, once it has forgotten the session, publishes
 * "ack:<node>:<nonce>". The ending node waits for that many acks (at most
 * session.end_confirm_ms) before the end is answered: from then on no node
 * accepts the token. The ends of the last seconds are sent again each time
 * Redis comes up (a new master after a failover may lack them).
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "session_store.h"

static struct session_store_events events;

static struct {
    struct event_base *base;
    const struct settings *s;
    struct confirm *pending; /* ends waiting for their acks */
    uint64_t next_nonce;
    struct recent_end *recent; /* the ends of the last RECENT_ENDS_MS, newest first */
    struct event *redis_up;    /* Redis (again, or a new master) up: send them again */
} rc_;

/* ---- confirmed ends ---- */

struct confirm {
    struct redis_call call; /* first: PUBLISH answers with it */
    uint64_t nonce;
    long expected; /* -1 until PUBLISH answered */
    long acked;
    void (*done)(void *arg);
    void *arg;
    struct event *timer;
    struct confirm *next;
};

static void confirm_finish(struct confirm *c, int timed_out)
{
    for (struct confirm **p = &rc_.pending; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    if (timed_out) {
        log_warn("session end: %ld of %ld nodes confirmed within %lld ms", c->acked, c->expected,
                 (long long)rc_.s->session_end_confirm_ms);
        metrics_count("session_end_unconfirmed", 1);
    }
    event_free(c->timer);
    void (*done)(void *) = c->done;
    void *arg = c->arg;
    free(c);
    if (done)
        done(arg);
}

static void confirm_check(struct confirm *c)
{
    if (c->expected >= 0 && c->acked >= c->expected)
        confirm_finish(c, 0);
}

static void confirm_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    confirm_finish(arg, 1);
}

static void published(struct redisReply *r, struct redis_call *call)
{
    struct confirm *c = (struct confirm *)call;
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        confirm_finish(c, 1); /* Redis is down: nodes fail closed for new requests */
        return;
    }
    c->expected = (long)r->integer;
    confirm_check(c);
}

static void on_ack(uint64_t nonce)
{
    for (struct confirm *c = rc_.pending; c; c = c->next)
        if (c->nonce == nonce) {
            c->acked++;
            confirm_check(c);
            return;
        }
}

/* Publish "<kind>:<what>:<node>:<nonce>" and call done once every node
 * that got it has acted on it. */
static void publish_confirmed(const char *kind, const char *what, void (*done)(void *arg),
                              void *arg)
{
    struct confirm *c = calloc(1, sizeof *c);
    struct timeval tv = {rc_.s->session_end_confirm_ms / 1000,
                         (rc_.s->session_end_confirm_ms % 1000) * 1000};
    if (!c || !(c->timer = evtimer_new(rc_.base, confirm_timeout, c))) {
        free(c);
        redis_cmd(NULL, "PUBLISH %ssess %s:%s", redis_prefix(), kind, what);
        if (done)
            done(arg);
        return;
    }
    *c = (struct confirm){{published}, ++rc_.next_nonce, -1, 0, done, arg, c->timer, rc_.pending};
    rc_.pending = c;
    evtimer_add(c->timer, &tv);
    if (redis_cmd(&c->call, "PUBLISH %ssess %s:%s:%s:%llu", redis_prefix(), kind, what, bus_node(),
                  (unsigned long long)c->nonce) < 0)
        confirm_finish(c, 1);
}

struct create_op {
    struct redis_call call;
    char key[SESSION_KEY_LEN + 1];
    int64_t user_id;
    void (*done)(void *arg, int status);
    void *arg;
};

static void created(struct redisReply *r, struct redis_call *call)
{
    struct create_op *op = (struct create_op *)call;
    if (r) /* the user's index of sessions, for ending them all at unregister */
        redis_cmd(NULL, "SADD %susess:%lld %s", redis_prefix(), (long long)op->user_id, op->key);
    op->done(op->arg, r ? 0 : CHATD_EUNAVAIL);
    free(op);
}

static long long ttl_of(int64_t expires_s)
{
    long long ttl = (long long)(expires_s - clock_wall_s());
    return ttl > 0 ? ttl : 1;
}

static int rs_create(const char *key, int64_t user_id, const char *username, int64_t expires_s,
                     void (*done)(void *arg, int status), void *arg)
{
    struct create_op *op = calloc(1, sizeof *op);
    if (!op)
        return CHATD_ENOMEM;
    op->call.fn = created;
    snprintf(op->key, sizeof op->key, "%s", key);
    op->user_id = user_id;
    op->done = done;
    op->arg = arg;
    int rc = redis_cmd(&op->call, "SET %ssess:%s %lld:%s EX %lld", redis_prefix(), key,
                       (long long)user_id, username, ttl_of(expires_s));
    if (rc < 0)
        free(op);
    return rc;
}

static void rs_touch(const char *key, int64_t expires_s)
{
    redis_cmd(NULL, "EXPIRE %ssess:%s %lld", redis_prefix(), key, ttl_of(expires_s));
    redis_cmd(NULL, "PUBLISH %ssess touch:%s:%lld", redis_prefix(), key, (long long)expires_s);
}

/* Ends that could not be sent (Redis down), sent again once it is back:
 * a logout during an outage still reaches the nodes that hold the session. */
struct unsent {
    char key[SESSION_KEY_LEN + 1];
    int64_t user_id;
    struct unsent *next;
};
static struct unsent *unsent;

/* The ends sent lately, sent again whenever the command link comes up: a
 * replica the Sentinels promote may lack the master's last writes, and a
 * session whose removal was lost would be found alive again. */
#define RECENT_ENDS_MS 10000
struct recent_end {
    char key[SESSION_KEY_LEN + 1]; /* "": every session of the user */
    int64_t user_id;
    int64_t at_ms;
    struct recent_end *next;
};

static void recent_prune(int64_t now_ms)
{
    for (struct recent_end **p = &rc_.recent; *p;) {
        struct recent_end *e = *p;
        if (now_ms - e->at_ms <= RECENT_ENDS_MS) {
            p = &e->next;
            continue;
        }
        *p = e->next;
        free(e);
    }
}

static void recent_note(const char *key, int64_t user_id)
{
    int64_t now = clock_now_ms();
    recent_prune(now);
    struct recent_end *e = calloc(1, sizeof *e);
    if (!e)
        return; /* only the repetition after a failover is lost */
    snprintf(e->key, sizeof e->key, "%s", key ? key : "");
    e->user_id = user_id;
    e->at_ms = now;
    e->next = rc_.recent;
    rc_.recent = e;
}

static int send_end(const char *key, int64_t user_id)
{
    if (redis_cmd(NULL, "DEL %ssess:%s", redis_prefix(), key) < 0)
        return CHATD_EUNAVAIL;
    redis_cmd(NULL, "SREM %susess:%lld %s", redis_prefix(), (long long)user_id, key);
    return 0;
}

static void send_end_user(int64_t user_id);

static void on_redis_up(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    recent_prune(clock_now_ms());
    for (struct recent_end *e = rc_.recent; e; e = e->next) {
        if (e->key[0])
            send_end(e->key, e->user_id);
        else
            send_end_user(e->user_id);
    }
}

static void rs_end(const char *key, int64_t user_id, void (*done)(void *arg), void *arg)
{
    struct unsent *u;
    if (send_end(key, user_id) < 0 && (u = calloc(1, sizeof *u))) {
        snprintf(u->key, sizeof u->key, "%s", key);
        u->user_id = user_id;
        u->next = unsent;
        unsent = u;
    }
    recent_note(key, user_id);
    publish_confirmed("end", key, done, arg);
}

void session_redis_resend(void)
{
    while (unsent && redis_ready()) {
        struct unsent *u = unsent;
        if (send_end(u->key, u->user_id) < 0)
            return;
        redis_cmd(NULL, "PUBLISH %ssess end:%s", redis_prefix(), u->key);
        unsent = u->next;
        free(u);
    }
}

struct user_op {
    struct redis_call call;
    int64_t user_id;
};

static void user_keys(struct redisReply *r, struct redis_call *call)
{
    struct user_op *op = (struct user_op *)call;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        redis_cmd(NULL, "DEL %ssess:%s", redis_prefix(), r->element[i]->str);
    redis_cmd(NULL, "DEL %susess:%lld", redis_prefix(), (long long)op->user_id);
    free(op);
}

/* DEL every session of the user (their keys are in its usess set). */
static void send_end_user(int64_t user_id)
{
    struct user_op *op = malloc(sizeof *op);
    if (op) {
        *op = (struct user_op){{user_keys}, user_id};
        if (redis_cmd(&op->call, "SMEMBERS %susess:%lld", redis_prefix(), (long long)user_id) < 0)
            free(op);
    }
}

static void rs_end_user(int64_t user_id, void (*done)(void *arg), void *arg)
{
    send_end_user(user_id);
    recent_note(NULL, user_id);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)user_id);
    publish_confirmed("user", id, done, arg);
}

struct lookup_op {
    struct redis_call call;
    session_found_fn found;
    void *arg;
};

static void looked_up(struct redisReply *r, struct redis_call *call)
{
    struct lookup_op *op = (struct lookup_op *)call;
    int64_t uid = 0, ttl = 0;
    const char *name = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_INTEGER) {
        char *colon = NULL;
        uid = strtoll(r->element[0]->str, &colon, 10);
        name = colon && *colon == ':' ? colon + 1 : NULL;
        ttl = r->element[1]->integer;
    }
    if (!r)
        op->found(op->arg, CHATD_EUNAVAIL, 0, NULL, 0);
    else if (uid > 0 && name && ttl > 0)
        op->found(op->arg, 0, uid, name, clock_wall_s() + ttl);
    else
        op->found(op->arg, 0, 0, NULL, 0);
    free(op);
}

static int rs_lookup(const char *key, session_found_fn found, void *arg)
{
    struct lookup_op *op = malloc(sizeof *op);
    if (!op)
        return CHATD_ENOMEM;
    *op = (struct lookup_op){{looked_up}, found, arg};
    /* value and remaining life in one round trip */
    int rc = redis_cmd(&op->call, "EVAL %s 1 %ssess:%s",
                       "local v = redis.call('GET', KEYS[1]) "
                       "if not v then return nil end "
                       "return {v, redis.call('TTL', KEYS[1])}",
                       redis_prefix(), key);
    if (rc < 0)
        free(op);
    return rc;
}

static void rs_purge(int64_t now_s)
{
    (void)now_s; /* keys expire by themselves */
}

/* "end:<key>[:<node>:<nonce>]", "user:<id>[:<node>:<nonce>]", "touch:<key>:<expires>"
 * and "ack:<node>:<nonce>" from any node, ours included. An end is acted on
 * and then acked to the node that asked. */
static void on_session_event(const char *topic, const char *data, size_t len)
{
    char buf[200];
    (void)topic;
    if (len >= sizeof buf)
        return;
    memcpy(buf, data, len);
    buf[len] = '\0';
    char *what = strchr(buf, ':');
    if (!what)
        return;
    *what++ = '\0';
    if (strcmp(buf, "ack") == 0) {
        char *nonce = strchr(what, ':');
        if (nonce && (*nonce++ = '\0', strcmp(what, bus_node()) == 0))
            on_ack(strtoull(nonce, NULL, 10));
        return;
    }
    char *node = strchr(what, ':'), *nonce = NULL;
    if (strcmp(buf, "touch") == 0) {
        if (node) {
            *node = '\0';
            events.touch(what, strtoll(node + 1, NULL, 10));
        }
        return;
    }
    if (node && (nonce = strchr(node + 1, ':')))
        *node++ = '\0', *nonce++ = '\0';
    if (strcmp(buf, "end") == 0)
        events.end(what);
    else if (strcmp(buf, "user") == 0)
        events.end_user(strtoll(what, NULL, 10));
    else
        return;
    if (nonce)
        redis_cmd(NULL, "PUBLISH %ssess ack:%s:%s", redis_prefix(), node, nonce);
}

void session_redis_free(void)
{
    while (unsent) {
        struct unsent *u = unsent;
        unsent = u->next;
        free(u);
    }
    while (rc_.recent) {
        struct recent_end *e = rc_.recent;
        rc_.recent = e->next;
        free(e);
    }
    if (rc_.redis_up)
        event_free(rc_.redis_up);
    rc_.redis_up = NULL;
    while (rc_.pending) { /* shutting down: nobody is left to answer */
        struct confirm *c = rc_.pending;
        rc_.pending = c->next;
        event_free(c->timer);
        free(c);
    }
}

int session_redis_init(struct event_base *base, const struct settings *s,
                       const struct session_store_events *ev)
{
    events = *ev;
    rc_.base = base;
    rc_.s = s;
    if (!redis_enabled()) {
        log_error("session.backend = \"redis\" needs redis.host");
        return CHATD_EINVAL;
    }
    char topic[96];
    snprintf(topic, sizeof topic, "%ssess", redis_prefix());
    redis_subscribe(topic);
    if (!(rc_.redis_up = event_new(base, -1, 0, on_redis_up, NULL)) ||
        redis_on_up(rc_.redis_up) < 0)
        return CHATD_ENOMEM;
    return redis_on_message("sess", on_session_event);
}

const struct session_store session_redis = {
    .name = "redis",
    .create = rs_create,
    .touch = rs_touch,
    .end = rs_end,
    .end_user = rs_end_user,
    .lookup = rs_lookup,
    .purge = rs_purge,
};
