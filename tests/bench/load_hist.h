/* A log-linear latency histogram in the spirit of HdrHistogram: every power
 * of two is split into 2^LOAD_HIST_SUB_BITS equal buckets, so a recorded
 * value is known to within 1/2^LOAD_HIST_SUB_BITS of itself (0.4 % with 8
 * bits) over the whole 64-bit range, in a fixed array and O(1) per record. */
#ifndef CHATD_LOAD_HIST_H
#define CHATD_LOAD_HIST_H

#include <stddef.h>
#include <stdint.h>

#define LOAD_HIST_SUB_BITS 8
#define LOAD_HIST_SUB (1u << LOAD_HIST_SUB_BITS)
#define LOAD_HIST_BUCKETS ((size_t)(64 - LOAD_HIST_SUB_BITS + 1) * LOAD_HIST_SUB)

struct load_hist {
    uint64_t *counts; /* LOAD_HIST_BUCKETS entries */
    uint64_t total;
    uint64_t min, max;
    double sum;
};

int load_hist_init(struct load_hist *h);
void load_hist_free(struct load_hist *h);
void load_hist_reset(struct load_hist *h);

/* The bucket a value falls in, and the range of values a bucket holds. */
size_t load_hist_bucket(uint64_t v);
void load_hist_bucket_range(size_t idx, uint64_t *lo, uint64_t *hi);

static inline void load_hist_record(struct load_hist *h, uint64_t v)
{
    h->counts[load_hist_bucket(v)]++;
    if (h->total == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->total++;
    h->sum += (double)v;
}

/* The value at quantile q (0..1): the middle of the bucket holding the
 * ceil(q * total)-th smallest value, kept within [min, max]; 0 when empty. */
uint64_t load_hist_quantile(const struct load_hist *h, double q);
double load_hist_mean(const struct load_hist *h);

#endif
