/* The push plugin: notifications for users who would not see them live,
 * handed to a backend chosen by config. */
#ifndef CHATD_PUSH_H
#define CHATD_PUSH_H

#include "plugin_util.h"

/* A push backend. open() reads its settings from the plugin's config and
 * returns its state; deliver() gets one notification {"userId","username",
 * "event"} (borrowed) on the loop thread and must not block it for long. */
struct push_backend {
    const char *name;
    int (*open)(const chatd_host *h, chatd_plugin *p, const json_t *conf, void **state);
    int (*deliver)(void *state, const json_t *notification);
    void (*close)(void *state);
};

extern const struct push_backend push_log;
extern const struct push_backend push_redis;

#endif
