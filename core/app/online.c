/*
 * Users online: the transitions told to plugins as USER_ONLINE and
 * USER_OFFLINE, the latter only after a grace during which no node held a
 * WebSocket of the user (a reconnect does not flap). On one node the state
 * is here; with Redis it is shared (cluster/userpres.c), and each
 * transition is told by exactly one node. Loop thread only.
 */
#include "online.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "hmap.h"
#include "loader.h"
#include "log.h"
#include "presence.h"
#include "redis.h"
#include "userpres.h"

/* A user's state on one node without Redis, or this node's pending grace. */
struct user {
    int64_t id;
    int told_online;
    int64_t closed_ms; /* when the last WebSocket went */
    struct event *grace;
};

static struct {
    struct event_base *base;
    const struct settings *s;
    int64_t grace_ms;
    int watched;
    hmap *users; /* id -> struct user */
    struct event *heartbeat;
} on;

static void emit(chatd_event_type type, int64_t user_id, int64_t time_ms)
{
    chatd_event ev = {.type = type, .user_id = user_id, .time_ms = time_ms};
    loader_emit(&ev);
}

static int shared(void)
{
    return redis_enabled();
}

static struct user *user_get(int64_t id)
{
    struct user *u = hmap_get_id(on.users, (uint64_t)id);
    if (u || !(u = calloc(1, sizeof *u)))
        return u;
    u->id = id;
    if (hmap_put_id(on.users, (uint64_t)id, u) < 0) {
        free(u);
        return NULL;
    }
    return u;
}

static void user_drop(struct user *u)
{
    hmap_del_id(on.users, (uint64_t)u->id);
    if (u->grace)
        event_free(u->grace);
    free(u);
}

/* ---- the shared state's answers ---- */

struct op {
    struct userpres_call call; /* first: the answer comes with it */
    int64_t user_id;
};

static struct op *op_new(int64_t user_id, void (*done)(struct userpres_call *, long long))
{
    struct op *o = malloc(sizeof *o);
    if (o)
        *o = (struct op){{.done = done}, user_id};
    return o;
}

static void online_answered(struct userpres_call *c, long long result)
{
    struct op *o = (struct op *)c;
    if (result == 1)
        emit(CHATD_EVENT_USER_ONLINE, o->user_id, 0);
    free(o);
}

static void settled(struct userpres_call *c, long long result)
{
    struct op *o = (struct op *)c;
    if (result > 0)
        emit(CHATD_EVENT_USER_OFFLINE, o->user_id, result);
    free(o);
}

/* ---- graces ---- */

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    struct user *u = arg;
    (void)fd, (void)what;
    int64_t id = u->id, closed = u->closed_ms;
    if (presence_user_clients(id)) { /* back here meanwhile */
        event_del(u->grace);
        return;
    }
    if (!shared()) {
        user_drop(u);
        emit(CHATD_EVENT_USER_OFFLINE, id, closed);
        return;
    }
    user_drop(u);
    struct op *o = op_new(id, settled);
    if (o && userpres_settle(id, clock_wall_ms(), &o->call) < 0)
        free(o); /* Redis is down: the sweep settles it later */
}

static void start_grace(struct user *u, int64_t closed_ms)
{
    u->closed_ms = closed_ms;
    if (!u->grace && !(u->grace = evtimer_new(on.base, on_grace, u)))
        return;
    /* a little after the deadline Redis keeps, so the settle finds it passed */
    int64_t ms = on.grace_ms + (shared() ? 50 : 0);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(u->grace, &tv);
}

static void leave_answered(struct userpres_call *c, long long result)
{
    struct op *o = (struct op *)c;
    struct user *u;
    if (result == 1 && !presence_user_clients(o->user_id) && (u = user_get(o->user_id)))
        start_grace(u, clock_wall_ms());
    free(o);
}

/* ---- transitions seen here ---- */

static void first_here(int64_t user_id)
{
    struct user *u = hmap_get_id(on.users, (uint64_t)user_id);
    if (u && u->grace && event_pending(u->grace, EV_TIMEOUT, NULL))
        event_del(u->grace); /* back within the grace: nothing to tell */
    if (shared()) {
        if (u)
            user_drop(u);
        struct op *o = op_new(user_id, online_answered);
        int64_t expiry = clock_wall_ms() + on.s->redis_presence_ttl * 1000;
        if (o && userpres_online(user_id, expiry, &o->call) < 0)
            free(o);
        return;
    }
    if ((u = u ? u : user_get(user_id)) && !u->told_online) {
        u->told_online = 1;
        emit(CHATD_EVENT_USER_ONLINE, user_id, 0);
    }
}

static void last_here(int64_t user_id)
{
    if (!shared()) {
        struct user *u = user_get(user_id);
        if (u && u->told_online)
            start_grace(u, clock_wall_ms());
        return;
    }
    struct op *o = op_new(user_id, leave_answered);
    if (o && userpres_leave(user_id, clock_wall_ms(), on.grace_ms, &o->call) < 0)
        free(o); /* Redis is down: the entry expires, and the sweep finds it */
}

void online_user_interest(int64_t user_id, int on_)
{
    bus_user_interest(user_id, on_);
    if (!on.watched)
        return;
    if (on_)
        first_here(user_id);
    else
        last_here(user_id);
}

/* ---- the heartbeat (with Redis) ---- */

static void refresh_one(int64_t user_id, void *arg)
{
    userpres_refresh(user_id, *(int64_t *)arg);
}

static struct userpres_sweep sweeper; /* one sweep at a time */
static int sweeping;

static void sweep_done(struct userpres_sweep *s, const int64_t *users, const int64_t *closed,
                       size_t n)
{
    (void)s;
    sweeping = 0;
    for (size_t i = 0; users && closed && i < n; i++)
        emit(CHATD_EVENT_USER_OFFLINE, users[i], closed[i]);
}

/* Keep this node's entries alive, and settle what dead nodes left. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (!on.watched || !redis_ready())
        return;
    int64_t now = clock_wall_ms(), period = on.s->redis_presence_ttl * 1000 / 3;
    int64_t expiry = now + on.s->redis_presence_ttl * 1000;
    presence_each_user(refresh_one, &expiry);
    if (!sweeping) {
        sweeper.done = sweep_done;
        sweeping = userpres_sweep(now, on.grace_ms, period, &sweeper) == 0;
    }
}

/* ---- the API ---- */

int online_init(struct event_base *base, const struct settings *s)
{
    on.base = base;
    on.s = s;
    if (!(on.users = hmap_new(0)))
        return CHATD_ENOMEM;
    if (!redis_enabled())
        return 0;
    int64_t every_ms = s->redis_presence_ttl * 1000 / 3;
    struct timeval tv = {every_ms / 1000, (every_ms % 1000) * 1000};
    if (!(on.heartbeat = event_new(base, -1, EV_PERSIST, on_heartbeat, NULL)) ||
        redis_on_up(on.heartbeat) < 0) /* the users again on a new master */
        return CHATD_ENOMEM;
    event_add(on.heartbeat, &tv);
    return 0;
}

void online_watch(int64_t grace_ms)
{
    on.watched = 1;
    if (grace_ms > on.grace_ms)
        on.grace_ms = grace_ms;
}

struct query {
    struct userpres_query q; /* first: the answer comes with it */
    int64_t *ids;
    void (*done)(void *arg, const unsigned char *online);
    void *arg;
};

static void queried(struct userpres_query *uq, const unsigned char *online)
{
    struct query *q = (struct query *)uq;
    q->done(q->arg, online);
    free(q->ids);
    free(q);
}

int online_query(const int64_t *ids, size_t n, void (*done)(void *arg, const unsigned char *online),
                 void *arg)
{
    if (!shared() || n == 0) {
        unsigned char *online = calloc(n + 1, 1);
        if (!online)
            return CHATD_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            struct user *u = hmap_get_id(on.users, (uint64_t)ids[i]);
            online[i] = u && u->told_online;
        }
        done(arg, online);
        free(online);
        return 0;
    }
    struct query *q = calloc(1, sizeof *q);
    if (!q || !(q->ids = malloc(n * sizeof *ids))) {
        free(q);
        return CHATD_ENOMEM;
    }
    memcpy(q->ids, ids, n * sizeof *ids);
    *q = (struct query){{.ids = q->ids, .n = n, .done = queried}, q->ids, done, arg};
    if (userpres_query(&q->q) < 0)
        queried(&q->q, NULL);
    return 0;
}

static int drop_user(uint64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key, (void)arg;
    struct user *u = value;
    if (u->grace)
        event_free(u->grace);
    free(u);
    return 1;
}

void online_free(void)
{
    if (on.users) {
        hmap_sweep(on.users, drop_user, NULL);
        hmap_free(on.users);
    }
    if (on.heartbeat)
        event_free(on.heartbeat);
    memset(&on, 0, sizeof on);
}
