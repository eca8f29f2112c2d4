/* Counters, gauges and histograms, rendered at /metrics in the Prometheus
 * text format, each family with its # HELP and # TYPE. Loop thread only,
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
/* The cell of the series chatd_<name>_total{<label>="<value>"}, made on
 * first use (label must be a constant, the same for every series of name;
 * value is copied). A family has METRICS_MAX_SERIES series at most: past
 * the first METRICS_MAX_SERIES - 1 values, every new one gets the cell of
 * "other". Cache it: stable for the process's life. */
int64_t *metrics_counter_label_ref(const char *name, const char *label, const char *value);
#define METRICS_MAX_SERIES 64
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
/* Record the size of one commit batch (any thread): the histogram
 * chatd_commit_batch_size and the gauge chatd_commit_batch_max. */
void metrics_observe_batch(size_t jobs);
/* Record one latency in microseconds into the histogram chatd_<name>_seconds. */
void metrics_observe_us(const char *name, uint64_t us);
/* The same for a plugin's metric (plugin: its name, copied): a name without
 * a help text of its own (metrics_help) is described as the plugin's. */
void metrics_plugin_count(const char *plugin, const char *name, uint64_t delta);
void metrics_plugin_gauge(const char *plugin, const char *name, int64_t value);
void metrics_plugin_observe_us(const char *plugin, const char *name, uint64_t us);
/* The help text of a known metric (name without chatd_ and _total or
 * _seconds), or NULL (metrics_help.c). */
const char *metrics_help(const char *name);
/* Append the Prometheus text exposition to out. */
void metrics_render(struct evbuffer *out);
void metrics_free(void);

#endif
