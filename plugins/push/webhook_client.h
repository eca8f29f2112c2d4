/*
 * POST notifications to a webhook through libcurl's multi interface, driven
 * by a libevent loop: no thread per request, no call that blocks the loop.
 * Shared by the push plugin's webhook backend and chatd-push.
 */
#ifndef CHATD_WEBHOOK_CLIENT_H
#define CHATD_WEBHOOK_CLIENT_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

struct webhook_conf {
    const char *url;     /* http:// or https:// */
    const char *secret;  /* NULL or "": no X-Chatd-Signature */
    int64_t timeout_ms;  /* the whole request, connecting included */
    const char *ca_file; /* NULL: the system's CA certificates */
};

/* How one POST ended: delivered (a 2xx), else why not (status: the HTTP
 * status, 0 when there was no answer); took_us from start to end. */
typedef void (*webhook_done_fn)(void *arg, int delivered, long status, const char *why,
                                uint64_t took_us);

struct webhook;

/* A client on base (conf copied). NULL with a reason in err. */
struct webhook *webhook_new(struct event_base *base, const struct webhook_conf *conf, char *err,
                            size_t errlen);
/* POST body (borrowed until done) with Content-Type: application/json,
 * X-Chatd-Id: id and, with a secret, X-Chatd-Signature: sha256=<hex HMAC>.
 * done() runs on the loop, never from inside this call. 0 or -1. */
int webhook_post(struct webhook *w, const char *id, const char *body, size_t len,
                 webhook_done_fn done, void *arg);
/* Requests under way. */
size_t webhook_in_flight(const struct webhook *w);
/* Drop what is in flight (each done() told, not delivered, "cancelled") and
 * free. */
void webhook_free(struct webhook *w);

/* The hex HMAC-SHA256 of body with secret into out (65 bytes). */
void webhook_sign(const char *secret, const char *body, size_t len, char out[65]);

#endif
