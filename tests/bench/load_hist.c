#include "load_hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int load_hist_init(struct load_hist *h)
{
    memset(h, 0, sizeof *h);
    h->counts = calloc(LOAD_HIST_BUCKETS, sizeof *h->counts);
    return h->counts ? 0 : -1;
}

void load_hist_free(struct load_hist *h)
{
    free(h->counts);
    h->counts = NULL;
}

void load_hist_reset(struct load_hist *h)
{
    memset(h->counts, 0, LOAD_HIST_BUCKETS * sizeof *h->counts);
    h->total = h->min = h->max = 0;
    h->sum = 0;
}

/* Values below 2^SUB_BITS get a bucket each. Above, a value whose highest set
 * bit is b keeps its top SUB_BITS+1 bits: the group (b - SUB_BITS + 1) picks
 * the power of two, the SUB_BITS bits under the top one the bucket in it. */
size_t load_hist_bucket(uint64_t v)
{
    if (v < LOAD_HIST_SUB)
        return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - LOAD_HIST_SUB_BITS;
    return (size_t)(shift + 1) * LOAD_HIST_SUB + (size_t)((v >> shift) - LOAD_HIST_SUB);
}

void load_hist_bucket_range(size_t idx, uint64_t *lo, uint64_t *hi)
{
    size_t group = idx >> LOAD_HIST_SUB_BITS;
    uint64_t sub = idx & (LOAD_HIST_SUB - 1);
    if (group == 0) {
        *lo = *hi = sub;
        return;
    }
    int shift = (int)group - 1;
    *lo = (LOAD_HIST_SUB + sub) << shift;
    *hi = *lo + ((uint64_t)1 << shift) - 1;
}

uint64_t load_hist_quantile(const struct load_hist *h, double q)
{
    if (h->total == 0)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < LOAD_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            load_hist_bucket_range(i, &lo, &hi);
            uint64_t mid = lo + (hi - lo) / 2;
            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max;
}

double load_hist_mean(const struct load_hist *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}
