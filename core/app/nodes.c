/*
 * What each node says of itself, for the operators (GET /api/v1/admin/stats):
 * with Redis every node writes {"node","connections","users","at"} into one
 * hash every presence_ttl / 3 seconds, and a query reads them all, leaving
 * out (and removing) those of nodes silent for three presence TTLs.
 */
#include "nodes.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "presence.h"
#include "redis.h"

static struct {
    const struct settings *s;
    struct event *timer;
} nd;

static json_t *self_stats(void)
{
    /* A node without Redis has no id: it is the only one. */
    const char *name = bus_node()[0] ? bus_node() : "local";
    return json_pack("{s:s, s:I, s:I, s:I}", "node", name, "connections",
                     (json_int_t)presence_count(), "users", (json_int_t)presence_users(), "at",
                     (json_int_t)clock_wall_ms());
}

static void key_of(char *key, size_t len)
{
    snprintf(key, len, "%snodes", redis_prefix());
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (!redis_ready())
        return;
    json_t *me = self_stats();
    char *text = me ? json_dumps(me, JSON_COMPACT) : NULL;
    char key[96];
    key_of(key, sizeof key);
    if (text)
        redis_cmd(NULL, "HSET %s %s %s", key, bus_node(), text);
    free(text);
    json_decref(me);
}

int nodes_init(struct event_base *base, const struct settings *s)
{
    nd.s = s;
    if (!redis_enabled())
        return 0;
    int64_t every_ms = s->redis_presence_ttl * 1000 / 3;
    struct timeval tv = {every_ms / 1000, (every_ms % 1000) * 1000};
    if (!(nd.timer = event_new(base, -1, EV_PERSIST, on_timer, NULL)) ||
        redis_on_up(nd.timer) < 0) /* the node's line again on a new master */
        return CHATD_ENOMEM;
    event_add(nd.timer, &tv);
    return 0;
}

void nodes_free(void)
{
    if (nd.timer)
        event_free(nd.timer);
    nd.timer = NULL;
}

struct query {
    struct redis_call call; /* first: the answer comes with it */
    void (*done)(void *arg, const json_t *nodes);
    void *arg;
};

/* The live nodes of the hash's fields and values; this node's from now. */
static json_t *live_nodes(const struct redisReply *r)
{
    json_t *list = json_array();
    int64_t stale = clock_wall_ms() - nd.s->redis_presence_ttl * 3000;
    char key[96];
    key_of(key, sizeof key);
    for (size_t i = 0; list && i + 1 < r->elements; i += 2) {
        const struct redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            strcmp(f->str, bus_node()) == 0)
            continue;
        json_t *o = json_loads(v->str, 0, NULL);
        if (o && json_integer_value(json_object_get(o, "at")) >= stale)
            json_array_append_new(list, o);
        else {
            json_decref(o);
            redis_cmd(NULL, "HDEL %s %s", key, f->str); /* a node that is gone */
        }
    }
    if (list)
        json_array_append_new(list, self_stats());
    return list;
}

static void answered(struct redisReply *r, struct redis_call *call)
{
    struct query *q = (struct query *)call;
    json_t *list = r && r->type == REDIS_REPLY_ARRAY ? live_nodes(r) : NULL;
    q->done(q->arg, list);
    json_decref(list);
    free(q);
}

int nodes_query(void (*done)(void *arg, const json_t *nodes), void *arg)
{
    if (!redis_enabled()) {
        json_t *list = json_pack("[o]", self_stats());
        if (!list)
            return CHATD_ENOMEM;
        done(arg, list);
        json_decref(list);
        return 0;
    }
    struct query *q = malloc(sizeof *q);
    if (!q)
        return CHATD_ENOMEM;
    *q = (struct query){{answered}, done, arg};
    char key[96];
    key_of(key, sizeof key);
    if (redis_cmd(&q->call, "HGETALL %s", key) < 0) {
        free(q);
        done(arg, NULL);
    }
    return 0;
}
