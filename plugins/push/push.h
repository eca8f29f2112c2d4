/*
 * The push plugin: notifications for users who would not see them live,
 * kept in a durable outbox (with a SQL store) and handed to a backend
 * chosen by config: a log file, a Redis stream for push workers, or a
 * webhook (PROTOCOL.md section 6).
 *
 *   intents.c  UNDELIVERABLE events of a push intent -> outbox rows, and the
 *              recovery of intents a dead node left behind
 *   queue.c    the rows this node delivers: due heap, retries with backoff,
 *              dead letters, leases, batched row updates
 *   devices.c  REGISTER_DEVICE / UNREGISTER_DEVICE
 *   log.c, redis.c, webhook.c  the backends
 */
#ifndef CHATD_PUSH_H
#define CHATD_PUSH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin_util.h"
#include "push_settings.h"

#define PUSH_ID_MAX 48

/* One notification for one user, as it is delivered. */
struct push_item {
    char id[PUSH_ID_MAX]; /* stable across retries and recoveries */
    int64_t user_id;
    char *body; /* the JSON delivered: {"id","userId","username","devices","event"} */
    size_t len;
    int attempts;
    int64_t next_at, created_at; /* ms since the epoch */
    size_t heap_at;              /* place in the due heap; SIZE_MAX: not there */
    int in_flight;
    struct push_item *older, *newer; /* every item held, oldest first */
};

/* What a backend says of one send. */
enum push_result { PUSH_DELIVERED, PUSH_RETRY };

typedef void (*push_sent_fn)(struct push_item *it, enum push_result r, const char *why, void *arg);

struct pplug;

/* A backend. open() reads its settings; send() hands one item over and
 * calls sent() once, later or at once, on the loop thread (it must not
 * block the loop). close() drops what is in flight without calling sent(). */
struct push_backend {
    const char *name;
    int (*open)(struct pplug *pp, const json_t *conf, void **state);
    int (*send)(void *state, struct push_item *it, push_sent_fn sent, void *arg);
    void (*close)(void *state);
};

extern const struct push_backend push_log;
extern const struct push_backend push_redis;
extern const struct push_backend push_webhook;

struct push_settings {
    int64_t max_in_flight, max_attempts, backoff_ms, backoff_max_ms;
    int64_t max_pending, lease_ms, recover_after_ms, max_devices;
};

struct intents;
struct queue;

struct pplug {
    chatd_plugin *p;
    const chatd_host *host;
    const struct push_backend *backend;
    void *backend_state;
    struct push_settings set;
    int durable;   /* a SQL store holds the outbox; else memory only */
    char node[24]; /* this process's name on outbox rows it delivers */
    struct intents *intents;
    struct queue *queue;
    int closing;
};

/* intents.c */
struct intents *intents_new(struct pplug *pp);
void intents_free(struct intents *in);
void intents_undeliverable(struct intents *in, const chatd_event *ev);
void intents_settled(struct intents *in, int64_t ref);

/* queue.c: items handed over are the queue's. */
struct queue *queue_new(struct pplug *pp);
void queue_free(struct queue *q);
void queue_add(struct queue *q, struct push_item *it);
size_t queue_held(const struct queue *q);
/* A new item: body taken (malloc'd). NULL when out of memory (body freed). */
struct push_item *push_item_new(const char *id, int64_t user_id, char *body, int64_t created_at);
void push_item_free(struct push_item *it);

/* push.c: prefix and 16 random hex digits into out. */
void push_random_name(const chatd_host *h, const char *prefix, char *out, size_t len);

/* devices.c */
int devices_init(struct pplug *pp);
/* Worker thread: the user's devices as a JSON array (new), or NULL. */
json_t *devices_of(const chatd_host *h, chatd_db *db, int64_t user_id);

#endif
