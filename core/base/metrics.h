/* Counters, gauges and histograms, rendered at /metrics. Loop thread only,
 * except metrics_observe_batch, which workers call. */
#ifndef CHATD_METRICS_H
#define CHATD_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Add delta to chatd_<name>_total; name is borrowed and copied on first use. */
void metrics_count(const char *name, uint64_t delta);
/* The counter's value cell, for hot paths: cache it in a static and add to
 * it directly (no lookup per event). Stable for the process's life. */
int64_t *metrics_counter_ref(const char *name);
/* Add delta through a cached cell (looked up on first use). */
#define METRICS_ADD(name, delta)                                                                   \
    do {                                                                                           \
        static int64_t *cell_;                                                                     \
        if (!cell_)                                                                                \
            cell_ = metrics_counter_ref(name);                                                     \
        if (cell_)                                                                                 \
            *cell_ += (int64_t)(delta);                                                            \
    } while (0)
/* Set the gauge chatd_<name>. */
void metrics_gauge(const char *name, int64_t value);
/* Record the size of one commit batch (any thread). */
void metrics_observe_batch(size_t jobs);
/* Record one latency in microseconds into the histogram chatd_<name>_seconds. */
void metrics_observe_us(const char *name, uint64_t us);
/* Append the Prometheus text exposition to out. */
void metrics_render(struct evbuffer *out);
void metrics_free(void);

#endif
