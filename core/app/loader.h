/*
 * Plugins: where they are found, loading each (dlopen RTLD_NOW | RTLD_LOCAL,
 * its descriptor copied up to its declared size and the rest zero-filled,
 * its ABI major checked), the events and user-removal hooks each
 * registered, and their removal at unload. Loop thread only, but for
 * loader_user_removing (a worker, inside a job).
 */
#ifndef CHATD_LOADER_H
#define CHATD_LOADER_H

#include <stddef.h>
#include <jansson.h>

#include "chatd/plugin.h"

struct event_base;
struct plugin_timer;
struct settings;
struct store_backend;

/* The number of event types (chatd_event_type runs from 1). */
#define LOADER_EVENT_TYPES (CHATD_EVENT_RELOAD + 1)

struct chatd_plugin {
    char *name;
    char *path;
    void *dl;
    chatd_plugin_desc desc; /* copied, zero-filled past the plugin's struct_size */
    void *state;
    json_t *config;
    struct store_backend *backend;
    int initialised;
    chatd_event_handler events[LOADER_EVENT_TYPES]; /* by chatd_event_type */
    struct plugin_timer *timers;                    /* pending host->after() calls */
    struct chatd_plugin *next;
};

/* Where migrations are found: the source tree's when this binary runs from
 * a build tree, else the install path (server.sql_dir overrides). Borrowed. */
const char *loader_sql_dir(const struct settings *s);

/* The loop the plugins' timers run on (start-up, before loading). */
void loader_init(struct event_base *base);
/* host->after(): fn(arg) once, delay_ms from now; dropped at p's unload. 0
 * or CHATD_ENOMEM. */
int loader_after(struct chatd_plugin *p, int64_t delay_ms, void (*fn)(void *arg), void *arg);

/* Load and initialise every plugin of the config, in order, handing each
 * host. 0, or a negative code with the reason (naming the plugin and path)
 * in err; what was loaded is unloaded by loader_unload_all. */
int loader_load_all(const struct settings *s, const chatd_host *host, char *err, size_t errlen);
/* Clean up and unload every plugin, last loaded first. */
void loader_unload_all(void);

/* Subscribe p to one event type. 0 or CHATD_EINVAL. */
int loader_on_event(struct chatd_plugin *p, chatd_event_type type, chatd_event_handler fn);
/* --check-config: find and look at every plugin of s, checking its settings,
 * without starting it. 0 or CHATD_EINVAL with err set. */
int loader_check_all(const struct settings *s, char *err, size_t errlen);
/* --help: the settings each plugin of s declares. */
void loader_print_settings(const struct settings *s);
/* Hand an event (borrowed) to every plugin subscribed to its type. */
void loader_emit(const chatd_event *ev);
/* Whether a plugin subscribed to the type. Any thread once start-up is over
 * (subscriptions are made in init only). */
int loader_subscribed(chatd_event_type type);
/* Add a user-removal hook of p: init() only (workers read the list unlocked). */
int loader_on_user_removing(struct chatd_plugin *p, chatd_user_hook fn);
/* Run every plugin's user-removal hook inside db's transaction. Worker thread. */
int loader_user_removing(chatd_db *db, int64_t user_id);

#endif
