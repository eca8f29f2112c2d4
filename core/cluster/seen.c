#include "seen.h"

#include <stdlib.h>

#include "chatd/plugin.h"

struct entry {
    int64_t channel_id, user_id;
    int64_t until_ms; /* 0: empty */
};

static struct {
    struct entry *v;
    size_t n;
    int64_t keep_ms;
} seen;

int seen_init(size_t slots, int64_t keep_ms)
{
    seen_free();
    if (!slots || keep_ms <= 0)
        return 0;
    if (!(seen.v = calloc(slots, sizeof *seen.v)))
        return CHATD_ENOMEM;
    seen.n = slots;
    seen.keep_ms = keep_ms;
    return 0;
}

void seen_free(void)
{
    free(seen.v);
    seen.v = NULL;
    seen.n = 0;
}

static struct entry *slot(int64_t channel_id, int64_t user_id)
{
    uint64_t h = (uint64_t)channel_id * 0x9e3779b97f4a7c15ULL;
    h ^= (uint64_t)user_id + 0x7f4a7c159e3779b9ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
    return &seen.v[(h ^ (h >> 33)) % seen.n];
}

void seen_note(int64_t channel_id, int64_t user_id, int entered, int64_t now_ms)
{
    if (!seen.n)
        return;
    struct entry *e = slot(channel_id, user_id);
    if (entered)
        *e = (struct entry){channel_id, user_id, now_ms + seen.keep_ms};
    else if (e->channel_id == channel_id && e->user_id == user_id)
        e->until_ms = 0;
}

int seen_entered(int64_t channel_id, int64_t user_id, int64_t now_ms)
{
    if (!seen.n)
        return 0;
    const struct entry *e = slot(channel_id, user_id);
    return e->until_ms > now_ms && e->channel_id == channel_id && e->user_id == user_id;
}
