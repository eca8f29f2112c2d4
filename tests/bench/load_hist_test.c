/* Checks of the load generator's latency histogram: exact small values,
 * bounded relative error, bucket order, and quantiles of known data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "load_hist.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

int main(void)
{
    /* every value lands in a bucket whose range holds it, buckets in order */
    size_t prev = 0;
    for (uint64_t v = 0; v < 5000000; v += 1 + v / 97) {
        size_t b = load_hist_bucket(v);
        uint64_t lo, hi;
        load_hist_bucket_range(b, &lo, &hi);
        CHECK(lo <= v && v <= hi, "value %llu outside bucket %zu [%llu, %llu]",
              (unsigned long long)v, b, (unsigned long long)lo, (unsigned long long)hi);
        CHECK(b >= prev, "bucket order broken at %llu", (unsigned long long)v);
        CHECK((double)(hi - lo) <= (double)v / LOAD_HIST_SUB + 1e-9, "bucket of %llu too wide",
              (unsigned long long)v);
        prev = b;
    }
    CHECK(load_hist_bucket(UINT64_MAX) == LOAD_HIST_BUCKETS - 1, "top bucket");
    CHECK(load_hist_bucket(LOAD_HIST_SUB - 1) == LOAD_HIST_SUB - 1, "small values exact");

    struct load_hist h;
    if (load_hist_init(&h) != 0)
        return 1;
    CHECK(load_hist_quantile(&h, 0.5) == 0, "empty histogram");
    /* 1..100000 microseconds, in nanoseconds */
    for (uint64_t i = 1; i <= 100000; i++)
        load_hist_record(&h, i * 1000);
    const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t k = 0; k < sizeof qs / sizeof *qs; k++) {
        double want = qs[k] * 100000 * 1000, got = (double)load_hist_quantile(&h, qs[k]);
        CHECK(fabs(got - want) / want < 0.005, "q%.3f: got %.0f, want %.0f", qs[k], got, want);
    }
    CHECK(h.min == 1000 && h.max == 100000000, "min/max");
    CHECK(fabs(load_hist_mean(&h) - 50000.5 * 1000) < 1, "mean");
    CHECK(load_hist_quantile(&h, 1.0) == h.max, "q1 is max");
    load_hist_reset(&h);
    load_hist_record(&h, 7);
    CHECK(load_hist_quantile(&h, 0.5) == 7 && load_hist_quantile(&h, 0.999) == 7, "single value");
    load_hist_free(&h);
    printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
