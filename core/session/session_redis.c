/*
 * Login sessions in Redis, for many nodes: <prefix>sess:<key> holds
 * "<user id> <username>" with the session's TTL, <prefix>usess:<user id> the
 * user's keys. Ends and refreshes are published on <prefix>sess so every
 * node closes or refreshes the WebSockets it holds.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "redis.h"
#include "session_store.h"

static struct session_store_events events;

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

static void rs_end(const char *key, int64_t user_id)
{
    redis_cmd(NULL, "DEL %ssess:%s", redis_prefix(), key);
    redis_cmd(NULL, "SREM %susess:%lld %s", redis_prefix(), (long long)user_id, key);
    redis_cmd(NULL, "PUBLISH %ssess end:%s", redis_prefix(), key);
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

static void rs_end_user(int64_t user_id)
{
    struct user_op *op = malloc(sizeof *op);
    if (op) {
        *op = (struct user_op){{user_keys}, user_id};
        if (redis_cmd(&op->call, "SMEMBERS %susess:%lld", redis_prefix(), (long long)user_id) < 0)
            free(op);
    }
    redis_cmd(NULL, "PUBLISH %ssess user:%lld", redis_prefix(), (long long)user_id);
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

/* "end:<key>", "touch:<key>:<expires>", "user:<id>" from any node, ours included. */
static void on_session_event(const char *topic, const char *data, size_t len)
{
    char buf[160];
    (void)topic;
    if (len >= sizeof buf)
        return;
    memcpy(buf, data, len);
    buf[len] = '\0';
    if (strncmp(buf, "end:", 4) == 0) {
        events.end(buf + 4);
    } else if (strncmp(buf, "user:", 5) == 0) {
        events.end_user(strtoll(buf + 5, NULL, 10));
    } else if (strncmp(buf, "touch:", 6) == 0) {
        char *colon = strchr(buf + 6, ':');
        if (colon) {
            *colon = '\0';
            events.touch(buf + 6, strtoll(colon + 1, NULL, 10));
        }
    }
}

int session_redis_init(const struct session_store_events *ev)
{
    events = *ev;
    if (!redis_enabled()) {
        log_error("session.backend = \"redis\" needs redis.host");
        return CHATD_EINVAL;
    }
    char topic[96];
    snprintf(topic, sizeof topic, "%ssess", redis_prefix());
    redis_subscribe(topic);
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
