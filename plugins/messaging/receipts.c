/*
 * Read receipts and typing, on the loop thread.
 *
 * NOTIFY_READ: a member's marker that moved is told to the others entered in
 * the channel and to the member's own other WebSockets, at most once per
 * interval per member and channel: within it the latest value waits for a
 * timer, and a value never goes down (the store's marker only moves forward,
 * and what was told is remembered). The interval is read_notify_interval_ms,
 * longer in a channel so large that its members would otherwise be told
 * more than read_notify_channel_rate receipts a second: every receipt is a
 * frame to each member, and a big channel's receipts must not cost more than
 * its messages.
 *
 * NOTIFY_TYPING: at most once per typing_interval_ms per user and channel,
 * the rest dropped; with several nodes, counted in Redis for all of them.
 * And at most typing_channel_rate a second per channel on this node: a
 * thousand members typing do not flood the channel with notifications.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging.h"

#define IDLE_MS 60000 /* an entry untouched this long holds nothing worth keeping */

struct reader {
    struct receipts *owner;
    int64_t channel_id, user_id;
    char username[UTIL_NAME_MAX];
    uint64_t conn;         /* the WebSocket of the latest acknowledgement */
    int64_t told, waiting; /* the marker told, and one waiting for the timer (0: none) */
    int64_t told_ms, touched_ms;
    int armed; /* a timer will tell `waiting` */
};

struct typist {
    int64_t told_ms;
};

struct receipts {
    struct mplug *mp;
    struct receipt_limits lim;
    struct util_buckets *typing_budget; /* per channel */
    chatd_map *readers;                 /* "channel:user" -> struct reader */
    chatd_map *typists;                 /* "channel:user" -> struct typist */
    int64_t swept_ms;
};

struct receipts *receipts_new(struct mplug *mp, const struct receipt_limits *lim)
{
    const chatd_host *h = mp->host;
    struct receipts *r = calloc(1, sizeof *r);
    if (!r || !(r->readers = h->map_new(1)) || !(r->typists = h->map_new(1)) ||
        !(r->typing_budget = util_buckets_new(h, lim->typing_rate, lim->typing_rate))) {
        if (r) {
            h->map_free(r->readers);
            h->map_free(r->typists);
        }
        free(r);
        return NULL;
    }
    r->mp = mp;
    r->lim = *lim;
    return r;
}

static int drop_all(int64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key, (void)arg;
    free(value);
    return 1;
}

void receipts_free(struct receipts *r)
{
    if (!r)
        return;
    const chatd_host *h = r->mp->host;
    h->map_sweep(r->readers, drop_all, NULL);
    h->map_sweep(r->typists, drop_all, NULL);
    h->map_free(r->readers);
    h->map_free(r->typists);
    util_buckets_free(r->typing_budget);
    free(r);
}

static int drop_idle_reader(int64_t id, const char *key, void *value, void *arg)
{
    struct reader *e = value;
    (void)id, (void)key;
    if (e->armed || *(int64_t *)arg - e->touched_ms < IDLE_MS)
        return 0;
    free(e);
    return 1;
}

static int drop_idle_typist(int64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key;
    if (*(int64_t *)arg - ((struct typist *)value)->told_ms < IDLE_MS)
        return 0;
    free(value);
    return 1;
}

/* Memory follows the members active within the last minute. */
static void sweep(struct receipts *r, int64_t now)
{
    if (now - r->swept_ms < IDLE_MS)
        return;
    r->swept_ms = now;
    r->mp->host->map_sweep(r->readers, drop_idle_reader, &now);
    r->mp->host->map_sweep(r->typists, drop_idle_typist, &now);
}

static void *entry(struct receipts *r, chatd_map *m, int64_t channel_id, int64_t user_id,
                   size_t size)
{
    const chatd_host *h = r->mp->host;
    char key[48];
    snprintf(key, sizeof key, "%lld:%lld", (long long)channel_id, (long long)user_id);
    void *e = h->map_get(m, 0, key);
    if (!e && (e = calloc(1, size)) && h->map_put(m, 0, key, e) < 0) {
        free(e);
        e = NULL;
    }
    return e;
}

static void tell_read(struct reader *e, int64_t seq, int64_t now)
{
    const chatd_host *h = e->owner->mp->host;
    e->told = seq;
    e->told_ms = now;
    e->waiting = 0;
    h->send_channel_and_user(e->channel_id, e->user_id, e->conn, "NOTIFY_READ",
                             json_pack("{s:o, s:s, s:I}", "channelId",
                                       util_channel_json(e->channel_id), "username", e->username,
                                       "messageSequence", (json_int_t)seq));
}

static void on_read_timer(void *arg)
{
    struct reader *e = arg;
    e->armed = 0;
    if (e->waiting > e->told)
        tell_read(e, e->waiting, e->owner->mp->host->now_ms());
}

/* The interval between two receipts of one member in a channel of members. */
static int64_t read_interval(const struct receipts *r, int64_t members)
{
    int64_t spread = members * 1000 / r->lim.read_rate;
    return spread > r->lim.read_ms ? spread : r->lim.read_ms;
}

void receipts_read(struct receipts *r, int64_t channel_id, int64_t members, int64_t user_id,
                   const char *username, uint64_t conn, int64_t seq)
{
    const chatd_host *h = r->mp->host;
    int64_t now = h->now_ms(), interval = read_interval(r, members);
    sweep(r, now);
    struct reader *e = entry(r, r->readers, channel_id, user_id, sizeof *e);
    if (!e)
        return;
    if (!e->owner) {
        e->owner = r;
        e->channel_id = channel_id;
        e->user_id = user_id;
        snprintf(e->username, sizeof e->username, "%s", username);
    }
    e->touched_ms = now;
    if (seq <= e->told || seq <= e->waiting)
        return; /* never down */
    e->conn = conn;
    if (!e->armed && now - e->told_ms >= interval) {
        tell_read(e, seq, now);
        return;
    }
    e->waiting = seq;
    if (!e->armed && h->after(r->mp->p, e->told_ms + interval - now, on_read_timer, e) == 0)
        e->armed = 1;
}

int receipts_typing_due(struct receipts *r, int64_t channel_id, int64_t user_id)
{
    struct typist *t = entry(r, r->typists, channel_id, user_id, sizeof *t);
    return !t || !t->told_ms || r->mp->host->now_ms() - t->told_ms >= r->lim.typing_ms;
}

struct typing_note {
    const chatd_host *h;
    int64_t channel_id;
    uint64_t conn;
    char username[UTIL_NAME_MAX];
};

static void tell_typing(struct typing_note *n)
{
    n->h->send_channel(n->channel_id, n->conn, "NOTIFY_TYPING",
                       json_pack("{s:o, s:s}", "channelId", util_channel_json(n->channel_id),
                                 "username", n->username));
}

/* The nodes' shared count for this interval: only its first is told. */
static void typing_counted(void *arg, int status, int64_t count)
{
    struct typing_note *n = arg;
    if (status < 0 || count == 1)
        tell_typing(n); /* Redis down: each node limits alone */
    free(n);
}

void receipts_typing(struct receipts *r, int64_t channel_id, int64_t user_id, const char *username,
                     uint64_t conn)
{
    const chatd_host *h = r->mp->host;
    int64_t now = h->now_ms();
    sweep(r, now);
    struct typist *t = entry(r, r->typists, channel_id, user_id, sizeof *t);
    if (t && t->told_ms && now - t->told_ms < r->lim.typing_ms)
        return;
    if (!util_buckets_take(r->typing_budget, channel_id, now)) {
        h->count(r->mp->p, "typing_dropped", 1);
        return; /* the channel has had its share this second */
    }
    if (t)
        t->told_ms = now;
    struct typing_note note = {h, channel_id, conn, ""}, *n;
    snprintf(note.username, sizeof note.username, "%s", username);
    char key[64];
    snprintf(key, sizeof key, "typing:%lld:%lld", (long long)channel_id, (long long)user_id);
    int64_t window_s = (r->lim.typing_ms + 999) / 1000;
    if (window_s > 0 && (n = malloc(sizeof *n))) {
        *n = note;
        if (h->shared_count(key, 1, window_s, typing_counted, n) == 0)
            return;
        free(n); /* one node: its own limit is the limit */
    }
    tell_typing(&note);
}
