/* The push plugin: takes the core's UNDELIVERABLE events (with the push
 * intents they settle), keeps them in the outbox and delivers them through
 * the configured backend. See push.h for the parts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"

static const struct push_backend *const backends[] = {&push_log, &push_redis, &push_webhook, NULL};

void push_random_name(const chatd_host *h, const char *prefix, char *out, size_t len)
{
    unsigned char r[8] = {0};
    h->random_bytes(r, sizeof r);
    snprintf(out, len, "%s%02x%02x%02x%02x%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
}

static void on_undeliverable(const chatd_event *ev, void *state)
{
    struct pplug *pp = state;
    if (ev->body)
        intents_undeliverable(pp->intents, ev);
}

static void on_settled(const chatd_event *ev, void *state)
{
    struct pplug *pp = state;
    intents_settled(pp->intents, ev->push_ref);
}

static void push_cleanup(void *state)
{
    struct pplug *pp = state;
    pp->closing = 1;
    if (pp->backend && pp->backend_state)
        pp->backend->close(pp->backend_state);
    intents_free(pp->intents);
    queue_free(pp->queue);
    free(pp);
}

static int read_settings(struct pplug *pp, const json_t *conf)
{
    const chatd_host *h = pp->host;
    struct push_settings *s = &pp->set;
    if (util_setting_int(h, pp->p, conf, push_settings_decl, "max_in_flight", &s->max_in_flight) <
            0 ||
        util_setting_int(h, pp->p, conf, push_settings_decl, "max_attempts", &s->max_attempts) <
            0 ||
        util_setting_int(h, pp->p, conf, push_settings_decl, "backoff_ms", &s->backoff_ms) < 0 ||
        util_setting_int(h, pp->p, conf, push_settings_decl, "backoff_max_ms", &s->backoff_max_ms) <
            0 ||
        util_setting_int(h, pp->p, conf, push_settings_decl, "max_pending", &s->max_pending) < 0 ||
        util_setting_int(h, pp->p, conf, push_settings_decl, "lease_ms", &s->lease_ms) < 0 ||
        util_setting_int(h, pp->p, conf, push_settings_decl, "recover_after_ms",
                         &s->recover_after_ms) < 0 ||
        util_setting_int(h, pp->p, conf, push_settings_decl, "max_devices_per_user",
                         &s->max_devices) < 0)
        return CHATD_EINVAL;
    if (s->backoff_max_ms < s->backoff_ms) {
        h->log(pp->p, CHATD_LOG_ERROR, "setting 'backoff_max_ms' must be at least 'backoff_ms'");
        return CHATD_EINVAL;
    }
    return 0;
}

static int choose_backend(struct pplug *pp, const json_t *conf)
{
    const json_t *b = json_object_get(conf, "backend");
    const char *name = json_is_string(b) ? json_string_value(b) : "log";
    for (int i = 0; backends[i] && !pp->backend; i++)
        if (strcmp(backends[i]->name, name) == 0)
            pp->backend = backends[i];
    if (!pp->backend) {
        pp->host->log(pp->p, CHATD_LOG_ERROR,
                      "push backend '%s' is unknown; available: log, redis, webhook", name);
        return CHATD_EINVAL;
    }
    return pp->backend->open(pp, conf, &pp->backend_state);
}

static int push_init(chatd_plugin *p, const chatd_host *host, const json_t *conf, void **state)
{
    if (!CHATD_HOST_HAS(host, gauge)) {
        host->log(p, CHATD_LOG_ERROR, "this chatd is older than the plugin (ABI 1.1 needed)");
        return CHATD_EINVAL;
    }
    struct pplug *pp = calloc(1, sizeof *pp);
    if (!pp)
        return CHATD_ENOMEM;
    *state = pp;
    pp->p = p;
    pp->host = host;
    push_random_name(host, "", pp->node, sizeof pp->node);
    /* With a SQL store the outbox is durable and devices can be registered;
     * without one, notifications wait in memory only. */
    pp->durable = host->backend_name(p) != NULL;
    int rc = read_settings(pp, conf);
    if (rc == 0)
        rc = choose_backend(pp, conf);
    if (rc < 0)
        return rc;
    if (!(pp->queue = queue_new(pp)) || !(pp->intents = intents_new(pp)))
        return CHATD_ENOMEM;
    if (!pp->durable)
        host->log(p, CHATD_LOG_WARN,
                  "no store: notifications are kept in memory only, and "
                  "devices cannot be registered (set store = \"sqlite\")");
    if (pp->durable && (rc = devices_init(pp)) < 0)
        return rc;
    if (host->on_event(p, CHATD_EVENT_UNDELIVERABLE, on_undeliverable) < 0 ||
        (pp->durable && host->on_event(p, CHATD_EVENT_PUSH_SETTLED, on_settled) < 0))
        return CHATD_EINVAL;
    return 0;
}

static const chatd_plugin_desc push_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "push",          .version = "1.1",
    .init = push_init,      .cleanup = push_cleanup, .settings = push_settings_decl,
};

CHATD_PLUGIN(push_desc)
