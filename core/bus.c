#include "bus.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "config.h"
#include "conn.h"
#include "hmap.h"
#include "log.h"
#include "metrics.h"
#include "presence.h"
#include "redis.h"
#include "session.h"
#include "ws.h"

#define NODE_LEN 16

static struct {
    const struct settings *s;
    char node[NODE_LEN + 1]; /* random id of this process */
    struct event *heartbeat;
} bus;

static int enabled(void)
{
    return redis_enabled() && bus.heartbeat;
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void topic_of(char *out, size_t len, const char *kind, int64_t id)
{
    snprintf(out, len, "%s%s:%lld", redis_prefix(), kind, (long long)id);
}

/* ---- receiving ---- */

/* "<node> <json>": deliver the JSON as one frame to the WebSockets here. */
static void deliver(const char *data, size_t len, struct conn *first, size_t next_off)
{
    if (len <= NODE_LEN + 1 || memcmp(data, bus.node, NODE_LEN) == 0)
        return; /* malformed, or ours: delivered here already */
    struct wsmsg *m = wsmsg_new(data + NODE_LEN + 1, len - NODE_LEN - 1);
    int64_t now = (int64_t)time(NULL);
    for (struct conn *c = first; c && m;) {
        struct conn *next = *(struct conn **)((char *)c + next_off);
        if (session_live_at(c->session, now))
            ws_send(c, m);
        c = next;
    }
    wsmsg_unref(m);
    metrics_count("bus_deliveries_in", 1);
}

static int64_t id_of(const char *topic)
{
    const char *colon = strrchr(topic, ':');
    return colon ? strtoll(colon + 1, NULL, 10) : 0;
}

static void on_channel(const char *topic, const char *data, size_t len)
{
    deliver(data, len, presence_channel_conns(id_of(topic)), offsetof(struct conn, c_next));
}

/* A user topic carries frames ("<node> {...}") and commands ("<node> !..."). */
static void on_user(const char *topic, const char *data, size_t len)
{
    int64_t user_id = id_of(topic);
    if (len > NODE_LEN + 7 && memcmp(data, bus.node, NODE_LEN) != 0 &&
        memcmp(data + NODE_LEN + 1, "!leave:", 7) == 0) {
        char num[24];
        size_t n = len - NODE_LEN - 8 < sizeof num - 1 ? len - NODE_LEN - 8 : sizeof num - 1;
        memcpy(num, data + NODE_LEN + 8, n);
        num[n] = '\0';
        presence_user_leave_channel(user_id, strtoll(num, NULL, 10));
        return;
    }
    deliver(data, len, presence_user_conns(user_id), offsetof(struct conn, u_next));
}

void bus_user_leave_channel(int64_t user_id, int64_t channel_id)
{
    if (!enabled())
        return;
    char topic[96], payload[NODE_LEN + 32];
    topic_of(topic, sizeof topic, "u", user_id);
    int n = snprintf(payload, sizeof payload, "%s !leave:%lld", bus.node, (long long)channel_id);
    redis_cmd(NULL, NULL, "PUBLISH %s %b", topic, payload, (size_t)n);
}

/* ---- sending ---- */

static void publish(const char *kind, int64_t id, const struct wsmsg *m, redis_reply_fn fn,
                    void *arg)
{
    char topic[96];
    topic_of(topic, sizeof topic, kind, id);
    const char *json = (const char *)m->data + m->hdr;
    size_t len = m->len - m->hdr;
    char *payload = malloc(NODE_LEN + 1 + len);
    if (!payload)
        goto fail;
    memcpy(payload, bus.node, NODE_LEN);
    payload[NODE_LEN] = ' ';
    memcpy(payload + NODE_LEN + 1, json, len);
    int rc = redis_cmd(fn, arg, "PUBLISH %s %b", topic, payload, NODE_LEN + 1 + len);
    free(payload);
    if (rc == 0) {
        metrics_count("bus_publishes", 1);
        return;
    }
fail:
    if (fn)
        fn(NULL, arg);
}

void bus_publish_channel(int64_t channel_id, const struct wsmsg *m)
{
    if (enabled())
        publish("ch", channel_id, m, NULL, NULL);
}

struct count_op {
    void (*receivers)(long n, void *arg);
    void *arg;
};

static void counted(struct redisReply *r, void *arg)
{
    struct count_op *op = arg;
    long n = r && r->type == REDIS_REPLY_INTEGER ? (long)r->integer : -1;
    /* our own subscription counts among the receivers when we hold one */
    op->receivers(n, op->arg);
    free(op);
}

void bus_publish_user(int64_t user_id, const struct wsmsg *m,
                      void (*receivers)(long n, void *arg), void *arg)
{
    if (!enabled()) {
        if (receivers)
            receivers(0, arg);
        return;
    }
    struct count_op *op = NULL;
    if (receivers && !(op = malloc(sizeof *op))) {
        receivers(-1, arg);
        return;
    }
    if (op) {
        op->receivers = receivers;
        op->arg = arg;
    }
    publish("u", user_id, m, op ? counted : NULL, op);
}

/* ---- interest and presence ---- */

void bus_user_interest(int64_t user_id, int on)
{
    if (!enabled())
        return;
    char topic[96];
    topic_of(topic, sizeof topic, "u", user_id);
    (on ? redis_subscribe : redis_unsubscribe)(topic);
}

void bus_channel_interest(int64_t channel_id, int on)
{
    if (!enabled())
        return;
    char topic[96];
    topic_of(topic, sizeof topic, "ch", channel_id);
    (on ? redis_subscribe : redis_unsubscribe)(topic);
}

/* <prefix>in:<channel> holds "<user>:<node>" -> the entry's expiry (ms). */
static void entered_write(int64_t channel_id, int64_t user_id)
{
    char key[96];
    topic_of(key, sizeof key, "in", channel_id);
    int64_t ttl_ms = bus.s->redis_presence_ttl * 1000;
    redis_cmd(NULL, NULL, "HSET %s %lld:%s %lld", key, (long long)user_id, bus.node,
              (long long)(wall_ms() + ttl_ms));
    redis_cmd(NULL, NULL, "PEXPIRE %s %lld", key, (long long)(2 * ttl_ms));
}

void bus_entered(int64_t channel_id, int64_t user_id, int on)
{
    if (!enabled())
        return;
    if (on) {
        entered_write(channel_id, user_id);
        return;
    }
    char key[96];
    topic_of(key, sizeof key, "in", channel_id);
    redis_cmd(NULL, NULL, "HDEL %s %lld:%s", key, (long long)user_id, bus.node);
}

static void refresh_one(int64_t channel_id, int64_t user_id, void *arg)
{
    (void)arg;
    entered_write(channel_id, user_id);
}

/* Keep this node's entries alive; a node that stops refreshing them (it
 * died) is forgotten after redis.presence_ttl. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (redis_ready())
        presence_each_entered(refresh_one, NULL);
}

struct who_op {
    int64_t *ids;
    size_t n;
    void (*entered)(const char *set, size_t n, void *arg);
    void *arg;
};

static void who_replied(struct redisReply *r, void *arg)
{
    struct who_op *op = arg;
    char *set = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && (set = calloc(op->n + 1, 1))) {
        int64_t now = wall_ms();
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            int64_t uid = strtoll(r->element[i]->str, NULL, 10);
            int64_t expiry = strtoll(r->element[i + 1]->str, NULL, 10);
            if (expiry <= now)
                continue; /* a node that stopped its heartbeat */
            for (size_t k = 0; k < op->n; k++)
                if (op->ids[k] == uid)
                    set[k] = 1;
        }
    }
    op->entered(set, op->n, op->arg);
    free(set);
    free(op->ids);
    free(op);
}

int bus_who_entered(int64_t channel_id, const int64_t *ids, size_t n,
                    void (*entered)(const char *set, size_t n, void *arg), void *arg)
{
    struct who_op *op = calloc(1, sizeof *op);
    if (!op || !(op->ids = malloc(n * sizeof *ids + 1))) {
        free(op);
        entered(NULL, n, arg);
        return CHATD_ENOMEM;
    }
    memcpy(op->ids, ids, n * sizeof *ids);
    op->n = n;
    op->entered = entered;
    op->arg = arg;
    char key[96];
    topic_of(key, sizeof key, "in", channel_id);
    if (!enabled() || redis_cmd(who_replied, op, "HGETALL %s", key) < 0) {
        who_replied(NULL, op);
        return CHATD_EUNAVAIL;
    }
    return 0;
}

int bus_init(struct event_base *base, const struct settings *s)
{
    bus.s = s;
    if (!redis_enabled())
        return 0;
    unsigned char r[NODE_LEN / 2];
    RAND_bytes(r, sizeof r);
    for (int i = 0; i < NODE_LEN / 2; i++)
        sprintf(bus.node + 2 * i, "%02x", r[i]);
    if (redis_on_message("ch:", on_channel) < 0 || redis_on_message("u:", on_user) < 0 ||
        !(bus.heartbeat = event_new(base, -1, EV_PERSIST, on_heartbeat, NULL)))
        return CHATD_ENOMEM;
    int64_t every_ms = s->redis_presence_ttl * 1000 / 3;
    struct timeval tv = {every_ms / 1000, (every_ms % 1000) * 1000};
    event_add(bus.heartbeat, &tv);
    log_info("node %s: cross-node delivery through redis %s:%lld", bus.node, s->redis_host,
             (long long)s->redis_port);
    return 0;
}

void bus_free(void)
{
    if (bus.heartbeat)
        event_free(bus.heartbeat);
    bus.heartbeat = NULL;
}
