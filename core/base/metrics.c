#include "metrics.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmap.h"

enum mkind { M_COUNTER, M_GAUGE, M_HIST };

/* Histogram bucket bounds in microseconds. */
static const uint64_t bounds_us[] = {100,   250,   500,   1000,   2500,   5000,
                                     10000, 25000, 50000, 100000, 250000, 1000000};
#define N_BOUNDS (sizeof bounds_us / sizeof bounds_us[0])
/* Commit batch sizes, in jobs. */
static const uint64_t bounds_jobs[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define N_JOB_BOUNDS (sizeof bounds_jobs / sizeof bounds_jobs[0])

/* One labelled series of a counter. */
struct series {
    char *value;
    int64_t count;
};

struct hist {
    uint64_t buckets[N_BOUNDS + 1];
    uint64_t sum, count;
};

/* A family: its unlabelled value, and its labelled series if any. */
struct metric {
    enum mkind kind;
    char *owner;       /* the plugin that made it, NULL: the core */
    int plain;         /* the unlabelled series is shown */
    int64_t value;     /* counters, gauges */
    struct hist h;     /* histograms (microseconds) */
    const char *label; /* the label of the series, NULL: none */
    struct series **series;
    size_t n_series;
};

static hmap *metrics;
static const char **order; /* names in first-use order, for stable output */
static size_t n_order;

/* Batch sizes come from worker threads: a lock is cheap next to a commit. */
static pthread_mutex_t batch_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hist batch;
static uint64_t batch_max;

static struct metric *get(const char *name, enum mkind kind, const char *owner)
{
    if (!metrics && !(metrics = hmap_new(1)))
        return NULL;
    struct metric *m = hmap_get_str(metrics, name);
    if (m)
        return m;
    const char **no = realloc(order, (n_order + 1) * sizeof *order);
    if (!no || !(m = calloc(1, sizeof *m)))
        return NULL;
    order = no;
    m->kind = kind;
    if ((owner && !(m->owner = strdup(owner))) || hmap_put_str(metrics, name, m) < 0) {
        free(m->owner);
        free(m);
        return NULL;
    }
    /* Keep a pointer to the map's own copy of the key. */
    size_t pos = 0;
    const char *key;
    void *v;
    while (hmap_iter(metrics, &pos, NULL, &key, &v))
        if (v == m)
            order[n_order++] = key;
    return m;
}

static struct metric *plain(const char *name, enum mkind kind, const char *owner)
{
    struct metric *m = get(name, kind, owner);
    if (m)
        m->plain = 1;
    return m;
}

void metrics_count(const char *name, uint64_t delta)
{
    struct metric *m = plain(name, M_COUNTER, NULL);
    if (m)
        m->value += (int64_t)delta;
}

int64_t *metrics_counter_ref(const char *name)
{
    struct metric *m = plain(name, M_COUNTER, NULL);
    return m ? &m->value : NULL;
}

int64_t *metrics_counter_label_ref(const char *name, const char *label, const char *value)
{
    struct metric *m = get(name, M_COUNTER, NULL);
    if (!m)
        return NULL;
    if (!m->label)
        m->label = label;
    for (size_t i = 0; i < m->n_series; i++)
        if (strcmp(m->series[i]->value, value) == 0)
            return &m->series[i]->count;
    if (m->n_series >= METRICS_MAX_SERIES - 1 && strcmp(value, "other") != 0)
        return metrics_counter_label_ref(name, label, "other");
    struct series **ns = realloc(m->series, (m->n_series + 1) * sizeof *ns);
    if (!ns)
        return NULL;
    m->series = ns;
    struct series *s = calloc(1, sizeof *s);
    if (!s || !(s->value = strdup(value))) {
        free(s);
        return NULL;
    }
    m->series[m->n_series++] = s;
    return &s->count;
}

void metrics_gauge(const char *name, int64_t value)
{
    struct metric *m = plain(name, M_GAUGE, NULL);
    if (m)
        m->value = value;
}

static void hist_add(struct hist *h, const uint64_t *bounds, size_t n, uint64_t v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    h->buckets[i]++;
    h->sum += v;
    h->count++;
}

void metrics_observe_us(const char *name, uint64_t us)
{
    struct metric *m = plain(name, M_HIST, NULL);
    if (m)
        hist_add(&m->h, bounds_us, N_BOUNDS, us);
}

void metrics_plugin_count(const char *plugin, const char *name, uint64_t delta)
{
    struct metric *m = plain(name, M_COUNTER, plugin);
    if (m)
        m->value += (int64_t)delta;
}

void metrics_plugin_gauge(const char *plugin, const char *name, int64_t value)
{
    struct metric *m = plain(name, M_GAUGE, plugin);
    if (m)
        m->value = value;
}

void metrics_plugin_observe_us(const char *plugin, const char *name, uint64_t us)
{
    struct metric *m = plain(name, M_HIST, plugin);
    if (m)
        hist_add(&m->h, bounds_us, N_BOUNDS, us);
}

void metrics_observe_batch(size_t jobs)
{
    pthread_mutex_lock(&batch_lock);
    hist_add(&batch, bounds_jobs, N_JOB_BOUNDS, jobs);
    if (jobs > batch_max)
        batch_max = jobs;
    pthread_mutex_unlock(&batch_lock);
}

/* text with the exposition format's escapes: \\ and \n, and \" in label values. */
static void add_escaped(struct evbuffer *out, const char *text, int quotes)
{
    const char *run = text;
    for (; *text; text++) {
        if (*text != '\\' && *text != '\n' && !(quotes && *text == '"'))
            continue;
        evbuffer_add(out, run, (size_t)(text - run));
        evbuffer_add(out, *text == '\n' ? "\\n" : *text == '"' ? "\\\"" : "\\\\", 2);
        run = text + 1;
    }
    evbuffer_add(out, run, (size_t)(text - run));
}

/* # HELP and # TYPE of the family full (chatd_<name> with its suffix). */
static void render_head(struct evbuffer *out, const char *full, const char *name, const char *owner,
                        enum mkind kind)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    static const char *const what[] = {"Counter", "Gauge", "Histogram"};
    const char *help = metrics_help(name);
    evbuffer_add_printf(out, "# HELP %s ", full);
    if (help) {
        add_escaped(out, help, 0);
    } else if (owner) { /* a plugin's own metric, not one of the table */
        evbuffer_add_printf(out, "%s %s of the plugin ", what[kind], name);
        add_escaped(out, owner, 0);
        evbuffer_add(out, ".", 1);
    } else {
        evbuffer_add_printf(out, "%s %s of chatd.", what[kind], name);
    }
    evbuffer_add_printf(out, "\n# TYPE %s %s\n", full, types[kind]);
}

/* The _bucket, _sum and _count series; bounds and sums are divided by scale. */
static void render_hist(struct evbuffer *out, const char *full, const struct hist *h,
                        const uint64_t *bounds, size_t n, double scale)
{
    uint64_t cum = 0;
    for (size_t b = 0; b < n; b++) {
        cum += h->buckets[b];
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", full, (double)bounds[b] / scale,
                            (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", full,
                        (unsigned long long)h->count, full, (double)h->sum / scale, full,
                        (unsigned long long)h->count);
}

static void render_one(struct evbuffer *out, const char *n, const struct metric *m)
{
    static const char *const suffix[] = {"_total", "", "_seconds"};
    char full[256];
    snprintf(full, sizeof full, "chatd_%s%s", n, suffix[m->kind]);
    render_head(out, full, n, m->owner, m->kind);
    if (m->kind == M_HIST) {
        render_hist(out, full, &m->h, bounds_us, N_BOUNDS, 1e6);
        return;
    }
    if (m->plain || !m->n_series)
        evbuffer_add_printf(out, "%s %lld\n", full, (long long)m->value);
    for (size_t i = 0; i < m->n_series; i++) {
        evbuffer_add_printf(out, "%s{%s=\"", full, m->label);
        add_escaped(out, m->series[i]->value, 1);
        evbuffer_add_printf(out, "\"} %lld\n", (long long)m->series[i]->count);
    }
}

void metrics_render(struct evbuffer *out)
{
    for (size_t i = 0; i < n_order; i++)
        render_one(out, order[i], hmap_get_str(metrics, order[i]));
    pthread_mutex_lock(&batch_lock);
    struct hist b = batch;
    uint64_t max = batch_max;
    pthread_mutex_unlock(&batch_lock);
    render_head(out, "chatd_commit_batch_size", "commit_batch_size", NULL, M_HIST);
    render_hist(out, "chatd_commit_batch_size", &b, bounds_jobs, N_JOB_BOUNDS, 1);
    render_head(out, "chatd_commit_batch_max", "commit_batch_max", NULL, M_GAUGE);
    evbuffer_add_printf(out, "chatd_commit_batch_max %llu\n", (unsigned long long)max);
}

/* Cached cells (METRICS_ADD) point into the metrics: freed only at exit. */
void metrics_free(void)
{
    size_t pos = 0;
    void *v;
    if (metrics)
        while (hmap_iter(metrics, &pos, NULL, NULL, &v)) {
            struct metric *m = v;
            for (size_t i = 0; i < m->n_series; i++) {
                free(m->series[i]->value);
                free(m->series[i]);
            }
            free(m->series);
            free(m->owner);
            free(m);
        }
    hmap_free(metrics);
    metrics = NULL;
    free(order);
    order = NULL;
    n_order = 0;
}
