#include "metrics.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmap.h"

enum mkind { M_COUNTER, M_GAUGE, M_HIST };

/* Histogram bucket bounds in microseconds. */
static const uint64_t bounds_us[] = {100,   250,   500,   1000,   2500,   5000,
                                     10000, 25000, 50000, 100000, 250000, 1000000};
#define N_BOUNDS (sizeof bounds_us / sizeof bounds_us[0])

struct metric {
    enum mkind kind;
    int64_t value;
    uint64_t buckets[N_BOUNDS + 1];
    uint64_t sum_us, count;
};

static hmap *metrics;
static const char **order; /* names in first-use order, for stable output */
static size_t n_order;

/* Batch sizes come from worker threads: a lock is cheap next to a commit. */
static pthread_mutex_t batch_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t batch_count, batch_jobs, batch_max;

static struct metric *get(const char *name, enum mkind kind)
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
    if (hmap_put_str(metrics, name, m) < 0) {
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

void metrics_count(const char *name, uint64_t delta)
{
    struct metric *m = get(name, M_COUNTER);
    if (m)
        m->value += (int64_t)delta;
}

int64_t *metrics_counter_ref(const char *name)
{
    struct metric *m = get(name, M_COUNTER);
    return m ? &m->value : NULL;
}

void metrics_gauge(const char *name, int64_t value)
{
    struct metric *m = get(name, M_GAUGE);
    if (m)
        m->value = value;
}

void metrics_observe_us(const char *name, uint64_t us)
{
    struct metric *m = get(name, M_HIST);
    if (!m)
        return;
    size_t i = 0;
    while (i < N_BOUNDS && us > bounds_us[i])
        i++;
    m->buckets[i]++;
    m->sum_us += us;
    m->count++;
}

void metrics_observe_batch(size_t jobs)
{
    pthread_mutex_lock(&batch_lock);
    batch_count++;
    batch_jobs += jobs;
    if (jobs > batch_max)
        batch_max = jobs;
    pthread_mutex_unlock(&batch_lock);
}

void metrics_render(struct evbuffer *out)
{
    for (size_t i = 0; i < n_order; i++) {
        struct metric *m = hmap_get_str(metrics, order[i]);
        const char *n = order[i];
        switch (m->kind) {
        case M_COUNTER:
            evbuffer_add_printf(out, "# TYPE chatd_%s_total counter\nchatd_%s_total %lld\n", n, n,
                                (long long)m->value);
            break;
        case M_GAUGE:
            evbuffer_add_printf(out, "# TYPE chatd_%s gauge\nchatd_%s %lld\n", n, n,
                                (long long)m->value);
            break;
        case M_HIST: {
            evbuffer_add_printf(out, "# TYPE chatd_%s_seconds histogram\n", n);
            uint64_t cum = 0;
            for (size_t b = 0; b < N_BOUNDS; b++) {
                cum += m->buckets[b];
                evbuffer_add_printf(out, "chatd_%s_seconds_bucket{le=\"%g\"} %llu\n", n,
                                    (double)bounds_us[b] / 1e6, (unsigned long long)cum);
            }
            evbuffer_add_printf(out,
                                "chatd_%s_seconds_bucket{le=\"+Inf\"} %llu\n"
                                "chatd_%s_seconds_sum %.6f\nchatd_%s_seconds_count %llu\n",
                                n, (unsigned long long)m->count, n, (double)m->sum_us / 1e6, n,
                                (unsigned long long)m->count);
            break;
        }
        }
    }
    pthread_mutex_lock(&batch_lock);
    evbuffer_add_printf(out,
                        "# TYPE chatd_commit_batches_total counter\nchatd_commit_batches_total "
                        "%llu\n# TYPE chatd_commit_batch_jobs_total counter\n"
                        "chatd_commit_batch_jobs_total %llu\n# TYPE chatd_commit_batch_max "
                        "gauge\nchatd_commit_batch_max %llu\n",
                        (unsigned long long)batch_count, (unsigned long long)batch_jobs,
                        (unsigned long long)batch_max);
    pthread_mutex_unlock(&batch_lock);
}

/* Cached cells (METRICS_ADD) point into the metrics: freed only at exit. */
void metrics_free(void)
{
    size_t pos = 0;
    void *v;
    if (metrics)
        while (hmap_iter(metrics, &pos, NULL, NULL, &v))
            free(v);
    hmap_free(metrics);
    metrics = NULL;
    free(order);
    order = NULL;
    n_order = 0;
}
