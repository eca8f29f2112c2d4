/* The push plugin: takes UNDELIVERABLE events from the core and hands each
 * to the configured backend as {"userId","username","event"}. */
#include <stdlib.h>
#include <string.h>

#include "push.h"

struct pplug {
    chatd_plugin *p;
    const chatd_host *host;
    const struct push_backend *backend;
    void *backend_state;
};

static const struct push_backend *const backends[] = {&push_log, &push_redis, NULL};
/* Planned backends, named so that configuring one gives a clear refusal. */
static const char *const planned[] = {"webhook", NULL};

static void on_undeliverable(const chatd_event *ev, void *state)
{
    struct pplug *pp = state;
    json_t *n = json_pack("{s:I, s:s, s:O}", "userId", (json_int_t)ev->user_id, "username",
                          ev->username ? ev->username : "", "event", ev->body);
    if (!n || pp->backend->deliver(pp->backend_state, n) < 0) {
        pp->host->count(pp->p, "push_failed", 1);
        pp->host->log(pp->p, CHATD_LOG_WARN, "push to user %lld failed", (long long)ev->user_id);
    } else {
        pp->host->count(pp->p, "push_sent", 1);
    }
    json_decref(n);
}

static void push_cleanup(void *state)
{
    struct pplug *pp = state;
    if (pp->backend && pp->backend_state)
        pp->backend->close(pp->backend_state);
    free(pp);
}

static int push_init(chatd_plugin *p, const chatd_host *host, const json_t *conf, void **state)
{
    struct pplug *pp = calloc(1, sizeof *pp);
    if (!pp)
        return CHATD_ENOMEM;
    *state = pp;
    pp->p = p;
    pp->host = host;
    const json_t *b = json_object_get(conf, "backend");
    const char *name = json_is_string(b) ? json_string_value(b) : "log";
    for (int i = 0; backends[i] && !pp->backend; i++)
        if (strcmp(backends[i]->name, name) == 0)
            pp->backend = backends[i];
    if (!pp->backend) {
        int known = 0;
        for (int i = 0; planned[i]; i++)
            known |= strcmp(planned[i], name) == 0;
        host->log(p, CHATD_LOG_ERROR, "push backend '%s' %s; available: log, redis", name,
                  known ? "is not available in this version" : "is unknown");
        return CHATD_EINVAL;
    }
    int rc = pp->backend->open(host, p, conf, &pp->backend_state);
    if (rc < 0)
        return rc;
    return host->on_event(p, CHATD_EVENT_UNDELIVERABLE, on_undeliverable);
}

static const chatd_plugin_desc push_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "push",          .version = "1.0",
    .init = push_init,      .cleanup = push_cleanup,
};

CHATD_PLUGIN(push_desc)
