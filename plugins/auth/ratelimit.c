#include "ratelimit.h"

#include <stdlib.h>

struct window {
    int64_t start_ms;
    int64_t failures;
};

struct ratelimit {
    const chatd_host *h;
    chatd_map *keys;
    int64_t max, window_ms;
    int64_t last_sweep_ms;
};

struct ratelimit *ratelimit_new(const chatd_host *h, int64_t max, int64_t window_ms)
{
    if (!CHATD_HOST_HAS(h, map_sweep))
        return NULL; /* a host older than ABI 1.1 */
    struct ratelimit *r = calloc(1, sizeof *r);
    if (!r || !(r->keys = h->map_new(1))) {
        free(r);
        return NULL;
    }
    r->h = h;
    r->max = max;
    r->window_ms = window_ms;
    return r;
}

static int drop_always(int64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key, (void)arg;
    free(value);
    return 1;
}

void ratelimit_free(struct ratelimit *r)
{
    if (!r)
        return;
    r->h->map_sweep(r->keys, drop_always, NULL);
    r->h->map_free(r->keys);
    free(r);
}

struct sweep_at {
    int64_t now, window_ms;
};

static int drop_if_over(int64_t id, const char *key, void *value, void *arg)
{
    const struct sweep_at *at = arg;
    (void)id, (void)key;
    if (at->now - ((struct window *)value)->start_ms < at->window_ms)
        return 0;
    free(value);
    return 1;
}

/* Drop windows that ended, at most once per window. */
static void sweep(struct ratelimit *r, int64_t now)
{
    if (now - r->last_sweep_ms < r->window_ms)
        return;
    r->last_sweep_ms = now;
    struct sweep_at at = {now, r->window_ms};
    r->h->map_sweep(r->keys, drop_if_over, &at);
}

int ratelimit_blocked(struct ratelimit *r, const char *key, int64_t now_ms)
{
    struct window *w = r->h->map_get(r->keys, 0, key);
    return w && now_ms - w->start_ms < r->window_ms && w->failures >= r->max;
}

void ratelimit_fail(struct ratelimit *r, const char *key, int64_t now_ms)
{
    sweep(r, now_ms);
    struct window *w = r->h->map_get(r->keys, 0, key);
    if (!w) {
        if (!(w = calloc(1, sizeof *w)) || r->h->map_put(r->keys, 0, key, w) < 0) {
            free(w);
            return;
        }
        w->start_ms = now_ms;
    } else if (now_ms - w->start_ms >= r->window_ms) {
        w->start_ms = now_ms;
        w->failures = 0;
    }
    w->failures++;
}

void ratelimit_reset(struct ratelimit *r, const char *key)
{
    free(r->h->map_del(r->keys, 0, key));
}
