/*
 * Plugin loading and the host table. A plugin is dlopen'ed with RTLD_NOW |
 * RTLD_LOCAL, its descriptor copied up to its declared size (the rest
 * zero-filled), its ABI major checked, and everything it registers is
 * remembered so it can be removed at unload. Loop thread only.
 */
#ifndef CHATD_PLUGINS_H
#define CHATD_PLUGINS_H

#include <jansson.h>

#include "chatd/plugin.h"

struct settings;
struct store_backend;

struct chatd_plugin {
    char *name;
    char *path;
    void *dl;
    chatd_plugin_desc desc;     /* copied, zero-filled past the plugin's struct_size */
    void *state;
    json_t *config;
    struct store_backend *backend;
    int initialised;
    chatd_event_handler events[8]; /* by chatd_event_type */
    struct chatd_plugin *next;
};

/* Where plugins and migrations are found: the build tree's when this binary
 * runs from it, else the install paths. Returns borrowed strings. */
const char *chatd_plugin_dir(const struct settings *s);
const char *chatd_sql_dir(const struct settings *s);

/* Load and initialise every plugin of the config, in order. On failure the
 * reason (naming the plugin and path) is in err. */
int plugins_load_all(const struct settings *s, char *err, size_t errlen);
/* Clean up and unload every plugin, last loaded first. */
void plugins_unload_all(void);
/* Hand an event to every plugin that subscribed to its type. */
void plugins_emit(const chatd_event *ev);
/* A plugin's state (what its init set). */
void *plugin_state(const struct chatd_plugin *p);
/* The host table handed to plugins. */
const chatd_host *plugins_host(void);

#endif
