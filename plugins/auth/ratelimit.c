#include "ratelimit.h"

#include <stdlib.h>

#include "hmap.h"

struct window {
    int64_t start_ms;
    int64_t failures;
};

struct ratelimit {
    hmap *keys;
    int64_t max, window_ms;
    int64_t last_sweep_ms;
};

struct ratelimit *ratelimit_new(int64_t max, int64_t window_ms)
{
    struct ratelimit *r = calloc(1, sizeof *r);
    if (!r || !(r->keys = hmap_new(1))) {
        free(r);
        return NULL;
    }
    r->max = max;
    r->window_ms = window_ms;
    return r;
}

void ratelimit_free(struct ratelimit *r)
{
    if (!r)
        return;
    size_t pos = 0;
    void *v;
    while (hmap_iter(r->keys, &pos, NULL, NULL, &v))
        free(v);
    hmap_free(r->keys);
    free(r);
}

/* Drop windows that ended, at most once per window. */
static void sweep(struct ratelimit *r, int64_t now)
{
    if (now - r->last_sweep_ms < r->window_ms)
        return;
    r->last_sweep_ms = now;
    const char **old = malloc(hmap_count(r->keys) * sizeof *old + 1);
    size_t n = 0, pos = 0;
    const char *key;
    void *v;
    if (!old)
        return;
    while (hmap_iter(r->keys, &pos, NULL, &key, &v))
        if (now - ((struct window *)v)->start_ms >= r->window_ms)
            old[n++] = key;
    for (size_t i = 0; i < n; i++)
        free(hmap_del_str(r->keys, old[i]));
    free(old);
}

int ratelimit_blocked(struct ratelimit *r, const char *key, int64_t now_ms)
{
    struct window *w = hmap_get_str(r->keys, key);
    return w && now_ms - w->start_ms < r->window_ms && w->failures >= r->max;
}

void ratelimit_fail(struct ratelimit *r, const char *key, int64_t now_ms)
{
    sweep(r, now_ms);
    struct window *w = hmap_get_str(r->keys, key);
    if (!w) {
        if (!(w = calloc(1, sizeof *w)) || hmap_put_str(r->keys, key, w) < 0) {
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
    free(hmap_del_str(r->keys, key));
}
