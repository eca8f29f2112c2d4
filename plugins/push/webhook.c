/* The webhook push backend: each notification POSTed to plugins.push.url
 * (webhook_client.c), delivered on a 2xx answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"
#include "webhook_client.h"

struct hook_state {
    struct pplug *pp;
    struct webhook *w;
};

struct post {
    struct hook_state *hs;
    struct push_item *it;
    push_sent_fn sent;
    void *arg;
};

static const char *conf_string(const json_t *conf, const char *key)
{
    return json_string_value(json_object_get(conf, key));
}

static int hook_open(struct pplug *pp, const json_t *conf, void **state)
{
    const chatd_host *h = pp->host;
    int64_t timeout;
    if (util_setting_int(h, pp->p, conf, push_settings_decl, "timeout_ms", &timeout) < 0)
        return CHATD_EINVAL;
    for (const char *const *k = (const char *const[]){"url", "secret", "ca_file", NULL}; *k; k++)
        if (json_object_get(conf, *k) && !conf_string(conf, *k)) {
            h->log(pp->p, CHATD_LOG_ERROR, "setting '%s' must be a string", *k);
            return CHATD_EINVAL;
        }
    if (!CHATD_HOST_HAS(h, event_base)) {
        h->log(pp->p, CHATD_LOG_ERROR, "this chatd is older than the webhook backend");
        return CHATD_EINVAL;
    }
    struct webhook_conf wc = {conf_string(conf, "url"), conf_string(conf, "secret"), timeout,
                              conf_string(conf, "ca_file")};
    struct hook_state *hs = calloc(1, sizeof *hs);
    char err[160];
    if (!hs || !(hs->w = webhook_new(h->event_base(), &wc, err, sizeof err))) {
        h->log(pp->p, CHATD_LOG_ERROR, "webhook: %s", hs ? err : "out of memory");
        free(hs);
        return CHATD_EINVAL;
    }
    hs->pp = pp;
    h->log(pp->p, CHATD_LOG_INFO, "push notifications are POSTed to %s%s", wc.url,
           wc.secret && wc.secret[0] ? ", signed" : "");
    *state = hs;
    return 0;
}

static void posted(void *arg, int delivered, long status, const char *why, uint64_t took_us)
{
    struct post *po = arg;
    struct pplug *pp = po->hs->pp;
    (void)status;
    if (!pp->closing) { /* closing: the item is the queue's to free */
        pp->host->observe_us(pp->p, "push_webhook", took_us);
        po->sent(po->it, delivered ? PUSH_DELIVERED : PUSH_RETRY, why, po->arg);
    }
    free(po);
}

static int hook_send(void *state, struct push_item *it, push_sent_fn sent, void *arg)
{
    struct hook_state *hs = state;
    struct post *po = malloc(sizeof *po);
    if (!po)
        return CHATD_ENOMEM;
    *po = (struct post){hs, it, sent, arg};
    if (webhook_post(hs->w, it->id, it->body, it->len, posted, po) < 0) {
        free(po);
        return CHATD_EINTERNAL;
    }
    return 0;
}

static void hook_close(void *state)
{
    struct hook_state *hs = state;
    if (!hs)
        return;
    webhook_free(hs->w); /* what is in flight goes: delivered again after a restart */
    free(hs);
}

const struct push_backend push_webhook = {"webhook", hook_open, hook_send, hook_close};
