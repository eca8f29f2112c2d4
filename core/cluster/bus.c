#include "bus.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "seen.h"
#include "sentinel.h"

#define NODE_LEN 16

static struct {
    const struct settings *s;
    char node[NODE_LEN + 1]; /* random id of this process */
    struct event *heartbeat;
    struct event *lag_probe;
    struct bus_events ev;
} bus;

static int enabled(void)
{
    return redis_enabled() && bus.heartbeat;
}

static void topic_of(char *out, size_t len, const char *kind, int64_t id)
{
    snprintf(out, len, "%s%s:%lld", redis_prefix(), kind, (long long)id);
}

/* ---- receiving ---- */

/* "<node> <json>" from another node: the JSON, or NULL (malformed, or ours:
 * delivered here already). */
static const char *frame_of(const char *data, size_t len, size_t *json_len)
{
    if (len <= NODE_LEN + 1 || memcmp(data, bus.node, NODE_LEN) == 0)
        return NULL;
    METRICS_ADD("bus_deliveries_in", 1);
    *json_len = len - NODE_LEN - 1;
    return data + NODE_LEN + 1;
}

static int64_t id_of(const char *topic)
{
    const char *colon = strrchr(topic, ':');
    return colon ? strtoll(colon + 1, NULL, 10) : 0;
}

static void on_channel(const char *topic, const char *data, size_t len)
{
    size_t n;
    const char *json = frame_of(data, len, &n);
    if (json)
        bus.ev.channel_frame(id_of(topic), json, n);
}

/* A user topic carries frames ("<node> {...}", or "<node> ?<channel> {...}"
 * for the WebSockets not entered in that channel) and commands
 * ("<node> !leave:<channel>"). */
static void on_user(const char *topic, const char *data, size_t len)
{
    int64_t user_id = id_of(topic);
    size_t n;
    const char *json = frame_of(data, len, &n);
    if (!json)
        return;
    if (*json != '!' && *json != '?') {
        bus.ev.user_frame(user_id, 0, json, n);
        return;
    }
    char num[24];
    size_t skip = *json == '!' ? 7 : 1; /* "!leave:" or "?" */
    if (n <= skip || (*json == '!' && memcmp(json, "!leave:", 7) != 0))
        return;
    size_t k = 0;
    while (skip + k < n && k < sizeof num - 1 && json[skip + k] >= '0' && json[skip + k] <= '9')
        num[k] = json[skip + k], k++;
    num[k] = '\0';
    int64_t channel_id = strtoll(num, NULL, 10);
    if (*json == '!')
        bus.ev.user_leave(user_id, channel_id);
    else if (skip + k < n && json[skip + k] == ' ')
        bus.ev.user_frame(user_id, channel_id, json + skip + k + 1, n - skip - k - 1);
}

void bus_user_leave_channel(int64_t user_id, int64_t channel_id)
{
    if (!enabled())
        return;
    char topic[96], payload[NODE_LEN + 32];
    topic_of(topic, sizeof topic, "u", user_id);
    int n = snprintf(payload, sizeof payload, "%s !leave:%lld", bus.node, (long long)channel_id);
    redis_cmd(NULL, "PUBLISH %s %b", topic, payload, (size_t)n);
}

/* ---- sending ---- */

/* PUBLISH "<node> <lead><json>" on the kind's topic of id (lead may be ""). */
static void publish(const char *kind, int64_t id, const char *lead, const char *json, size_t len,
                    struct redis_call *call)
{
    char topic[96];
    topic_of(topic, sizeof topic, kind, id);
    size_t lead_len = strlen(lead);
    char *payload = malloc(NODE_LEN + 1 + lead_len + len);
    int rc = CHATD_ENOMEM;
    if (payload) {
        memcpy(payload, bus.node, NODE_LEN);
        payload[NODE_LEN] = ' ';
        memcpy(payload + NODE_LEN + 1, lead, lead_len);
        memcpy(payload + NODE_LEN + 1 + lead_len, json, len);
        rc = redis_cmd(call, "PUBLISH %s %b", topic, payload, NODE_LEN + 1 + lead_len + len);
        free(payload);
    }
    if (rc == 0)
        METRICS_ADD("bus_publishes", 1);
    else if (call)
        call->fn(NULL, call);
}

void bus_publish_channel(int64_t channel_id, const char *json, size_t len)
{
    if (enabled())
        publish("ch", channel_id, "", json, len, NULL);
}

/* The number of receivers PUBLISH answered (our own subscription counts
 * among them when we hold one). */
static void counted(struct redisReply *r, struct redis_call *call)
{
    struct bus_receivers *rx = (struct bus_receivers *)call;
    rx->done(rx, r && r->type == REDIS_REPLY_INTEGER ? (long)r->integer : -1);
}

void bus_publish_user(int64_t user_id, int64_t except_channel, const char *json, size_t len,
                      struct bus_receivers *r)
{
    if (!enabled()) {
        if (r)
            r->done(r, 0);
        return;
    }
    char lead[32] = "";
    if (except_channel)
        snprintf(lead, sizeof lead, "?%lld ", (long long)except_channel);
    if (r)
        r->call.fn = counted;
    publish("u", user_id, lead, json, len, r ? &r->call : NULL);
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
    redis_cmd(NULL, "HSET %s %lld:%s %lld", key, (long long)user_id, bus.node,
              (long long)(clock_wall_ms() + ttl_ms));
    redis_cmd(NULL, "PEXPIRE %s %lld", key, (long long)(2 * ttl_ms));
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
    redis_cmd(NULL, "HDEL %s %lld:%s", key, (long long)user_id, bus.node);
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
        bus.ev.each_entered(refresh_one, NULL);
}

/* ---- lag: a probe through Redis and back, once a second ---- */

/* The bus's own delay, as the frames between nodes see it: PUBLISH on the
 * command link to Redis, and back on the subscription link, each behind
 * whatever else is queued on it. One clock (this node's), so no skew. */
static void lag_topic(char *out, size_t len)
{
    snprintf(out, len, "%slag:%s", redis_prefix(), bus.node);
}

static void on_lag(const char *topic, const char *data, size_t len)
{
    char num[24];
    (void)topic;
    if (len == 0 || len >= sizeof num)
        return;
    memcpy(num, data, len);
    num[len] = '\0';
    int64_t sent = strtoll(num, NULL, 10), now = clock_now_us();
    if (sent > 0 && now >= sent)
        metrics_observe_us("bus_lag", (uint64_t)(now - sent));
}

static void on_lag_probe(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (!redis_ready())
        return;
    char topic[96], payload[24];
    lag_topic(topic, sizeof topic);
    int n = snprintf(payload, sizeof payload, "%lld", (long long)clock_now_us());
    redis_cmd(NULL, "PUBLISH %s %b", topic, payload, (size_t)n);
}

static void who_replied(struct redisReply *r, struct redis_call *call)
{
    struct bus_who *w = (struct bus_who *)call;
    char *set = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && (set = calloc(w->n + 1, 1))) {
        int64_t now = clock_wall_ms();
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            int64_t uid = strtoll(r->element[i]->str, NULL, 10);
            int64_t expiry = strtoll(r->element[i + 1]->str, NULL, 10);
            if (expiry <= now)
                continue; /* a node that stopped its heartbeat */
            for (size_t k = 0; k < w->n; k++)
                if (w->ids[k] == uid)
                    set[k] = 1;
        }
    }
    int64_t now = clock_now_ms();
    for (size_t k = 0; k < w->n; k++)
        seen_note(w->channel_id, w->ids[k], set && set[k], now);
    w->done(w, set);
    free(set);
}

int bus_entered_lately(int64_t channel_id, int64_t user_id)
{
    return enabled() && seen_entered(channel_id, user_id, clock_now_ms());
}

void bus_who_entered(int64_t channel_id, struct bus_who *w)
{
    char key[96];
    topic_of(key, sizeof key, "in", channel_id);
    w->channel_id = channel_id;
    w->call.fn = who_replied;
    if (!enabled() || redis_cmd(&w->call, "HGETALL %s", key) < 0)
        who_replied(NULL, &w->call);
}

int bus_init(struct event_base *base, const struct settings *s, const struct bus_events *ev)
{
    bus.s = s;
    bus.ev = *ev;
    if (!redis_enabled())
        return 0;
    unsigned char r[NODE_LEN / 2];
    if (RAND_bytes(r, sizeof r) != 1) {
        log_error("bus: no random bytes for the node id");
        return CHATD_EINTERNAL;
    }
    for (int i = 0; i < NODE_LEN / 2; i++)
        sprintf(bus.node + 2 * i, "%02x", r[i]);
    if (seen_init((size_t)s->redis_entered_cache_slots, s->redis_entered_cache_ms) < 0 ||
        redis_on_message("ch:", on_channel) < 0 || redis_on_message("u:", on_user) < 0 ||
        redis_on_message("lag:", on_lag) < 0 ||
        !(bus.heartbeat = event_new(base, -1, EV_PERSIST, on_heartbeat, NULL)) ||
        redis_on_up(bus.heartbeat) < 0 || /* the entries again on a new master */
        !(bus.lag_probe = event_new(base, -1, EV_PERSIST, on_lag_probe, NULL)))
        return CHATD_ENOMEM;
    int64_t every_ms = s->redis_presence_ttl * 1000 / 3;
    struct timeval tv = {every_ms / 1000, (every_ms % 1000) * 1000}, second = {1, 0};
    event_add(bus.heartbeat, &tv);
    event_add(bus.lag_probe, &second);
    char topic[96];
    lag_topic(topic, sizeof topic);
    redis_subscribe(topic);
    if (sentinel_enabled(s))
        log_info("node %s: cross-node delivery through the Redis master '%s' of the Sentinels",
                 bus.node, s->redis_master_name);
    else
        log_info("node %s: cross-node delivery through redis %s:%lld", bus.node, s->redis_host,
                 (long long)s->redis_port);
    return 0;
}

const char *bus_node(void)
{
    return bus.node;
}

void bus_free(void)
{
    if (bus.heartbeat)
        event_free(bus.heartbeat);
    bus.heartbeat = NULL;
    if (bus.lag_probe)
        event_free(bus.lag_probe);
    bus.lag_probe = NULL;
    seen_free();
}
