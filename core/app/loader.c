#include "loader.h"

#include <dlfcn.h>
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_check.h"
#include "db.h"
#include "dispatch.h"
#include "filters.h"
#include "log.h"
#include "router.h"
#include "store.h"

#ifndef CHATD_PLUGIN_DIR
#define CHATD_PLUGIN_DIR "/usr/local/lib/chatd"
#endif
#ifndef CHATD_SQL_DIR
#define CHATD_SQL_DIR "/usr/local/share/chatd/sql"
#endif
#ifndef CHATD_SOURCE_SQL_DIR
#define CHATD_SOURCE_SQL_DIR CHATD_SQL_DIR
#endif

static struct chatd_plugin *plugins, *plugins_tail;
static struct event_base *loop_base;

struct plugin_timer {
    struct event *ev;
    struct chatd_plugin *owner;
    void (*fn)(void *arg);
    void *arg;
    struct plugin_timer *prev, *next; /* the owner's pending timers */
};

/* User-removal hooks, in load order; fixed after start-up, so workers read
 * the array without a lock. */
static struct user_hook {
    struct chatd_plugin *owner;
    chatd_user_hook fn;
} * user_hooks;
static size_t n_user_hooks;

/* ---- where things are ---- */

/* The build directory when this executable is core/chatd inside a meson build
 * tree, else NULL. Lets `build/core/chatd -c etc/chatd.conf` run uninstalled. */
static const char *build_root(void)
{
    static char root[PATH_MAX + 8];
    static int done;
    if (done)
        return root[0] ? root : NULL;
    done = 1;
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0'; /* .../build/core */
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/../meson-private", exe);
    struct stat sb;
    if (stat(probe, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(root, sizeof root, "%s/..", exe);
    return root[0] ? root : NULL;
}

/* Where plugins are found by name (NULL: plugins/<name>/<name>.so of the build tree). */
static const char *loader_plugin_dir(const struct settings *s)
{
    if (s->plugin_dir[0])
        return s->plugin_dir;
    return build_root() ? NULL : CHATD_PLUGIN_DIR;
}

const char *loader_sql_dir(const struct settings *s)
{
    if (s->sql_dir[0])
        return s->sql_dir;
    return build_root() ? CHATD_SOURCE_SQL_DIR : CHATD_SQL_DIR;
}

static void plugin_path(const struct settings *s, const char *name, const char *given, char *out,
                        size_t len)
{
    /* Paths past PATH_MAX fail at stat() with the path named: truncation is harmless. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
    const char *dir = loader_plugin_dir(s);
    if (given && *given) {
        if (strchr(given, '/') || !dir)
            snprintf(out, len, "%s", given);
        else
            snprintf(out, len, "%s/%s", dir, given);
    } else if (dir) {
        snprintf(out, len, "%s/%s.so", dir, name);
    } else {
        snprintf(out, len, "%s/plugins/%s/%s.so", build_root(), name, name);
    }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
}

/* ---- timers ---- */

void loader_init(struct event_base *base)
{
    loop_base = base;
}

static void timer_unlink(struct plugin_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        t->owner->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    event_free(t->ev);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct plugin_timer *t = arg;
    (void)fd, (void)what;
    void (*fn)(void *) = t->fn;
    void *fn_arg = t->arg;
    timer_unlink(t);
    free(t);
    fn(fn_arg);
}

int loader_after(struct chatd_plugin *p, int64_t delay_ms, void (*fn)(void *arg), void *arg)
{
    struct plugin_timer *t = calloc(1, sizeof *t);
    if (!t || !fn || !(t->ev = evtimer_new(loop_base, on_timer, t))) {
        free(t);
        return CHATD_ENOMEM;
    }
    *t = (struct plugin_timer){t->ev, p, fn, arg, NULL, p->timers};
    if (p->timers)
        p->timers->prev = t;
    p->timers = t;
    if (delay_ms < 0)
        delay_ms = 0;
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    event_add(t->ev, &tv);
    return 0;
}

/* ---- loading ---- */

static void plugin_free(struct chatd_plugin *p)
{
    while (p->timers) { /* dropped, not called: the plugin is going */
        struct plugin_timer *t = p->timers;
        timer_unlink(t);
        free(t);
    }
    if (p->initialised) { /* only init registers handlers, routes and filters */
        dispatch_remove_owner(p);
        router_remove_owner(p);
        filters_remove_owner(p);
    }
    if (p->dl)
        dlclose(p->dl);
    json_decref(p->config);
    free(p->name);
    free(p->path);
    free(p);
}

/* The plugin's entry against the settings it declares (ABI 1.1), defaults
 * filled in; a plugin that declares none has its entry passed unchecked. */
static int check_settings(const struct settings *s, const struct chatd_plugin *p, json_t *conf,
                          char *err, size_t errlen)
{
    if (!p->desc.settings) {
        log_info("plugin '%s' declares no settings (ABI %d.%d): its settings are not checked",
                 p->name, p->desc.abi_major, p->desc.abi_minor);
        return 0;
    }
    return config_check_plugin(s->plugin_where, conf, p->desc.settings, err, errlen);
}

/* Find, load and look at the plugin of conf, without starting it: its file,
 * its ABI, its declared settings. NULL with err set. */
static struct chatd_plugin *open_plugin(const struct settings *s, json_t *conf, char *err,
                                        size_t errlen)
{
    const char *name = json_string_value(json_object_get(conf, "name"));
    const char *given = json_string_value(json_object_get(conf, "path"));
    char path[PATH_MAX];
    plugin_path(s, name, given, path, sizeof path);
    struct chatd_plugin *p = calloc(1, sizeof *p);
    struct stat sb;
    chatd_plugin_entry_fn entry;
    const chatd_plugin_desc *d = NULL;
    if (!p || !(p->name = strdup(name)) || !(p->path = strdup(path)))
        snprintf(err, errlen, "out of memory");
    else if (stat(path, &sb) != 0)
        snprintf(err, errlen, "plugin '%s': no such file %s", name, path);
    /* NODELETE: a plugin closed (a failed check, a reload's look at the
     * settings) stays mapped, and so do the libraries it brought (libcurl and
     * its TLS stack): thread-local storage that glibc handed out for them
     * never points into unmapped memory, which LeakSanitizer would walk at
     * exit. Loading the same file again finds it loaded. */
    else if (!(p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)))
        snprintf(err, errlen, "plugin '%s': cannot load %s: %s", name, path, dlerror());
    else if (*(void **)&entry = dlsym(p->dl, CHATD_PLUGIN_ENTRY_SYMBOL),
             !(d = entry ? entry() : NULL))
        snprintf(err, errlen, "plugin '%s': %s exports no %s", name, path,
                 CHATD_PLUGIN_ENTRY_SYMBOL);
    else if (d->struct_size < offsetof(chatd_plugin_desc, abi_minor) + sizeof d->abi_minor ||
             d->abi_major != CHATD_ABI_MAJOR)
        snprintf(err, errlen,
                 "plugin '%s': %s was built for plugin ABI %d.%d; this chatd speaks %d.%d", name,
                 path, d->abi_major, d->abi_minor, CHATD_ABI_MAJOR, CHATD_ABI_MINOR);
    else {
        /* Copy what the plugin declared; fields it does not know stay zero. */
        memcpy(&p->desc, d, d->struct_size < sizeof p->desc ? d->struct_size : sizeof p->desc);
        p->config = json_incref(conf);
        if (!p->desc.init)
            snprintf(err, errlen, "plugin '%s': %s has no init function", name, path);
        else if (check_settings(s, p, conf, err, errlen) == 0)
            return p;
    }
    if (p)
        plugin_free(p);
    return NULL;
}

static int load_one(const struct settings *s, const chatd_host *host, json_t *conf, char *err,
                    size_t errlen)
{
    struct chatd_plugin *p = open_plugin(s, conf, err, errlen);
    if (!p)
        return CHATD_EINVAL;
    /* The SQL backend: `store`, or else `backend` when it names a driver
     * (any other value, push's "log", say, is the plugin's own). */
    const char *backend = json_string_value(json_object_get(conf, "store"));
    if (!backend)
        backend = json_string_value(json_object_get(conf, "backend"));
    if (backend && db_driver_find(backend) &&
        !(p->backend = store_backend_open(backend, err, errlen))) {
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "plugin '%s': backend '%s': %s", p->name, backend, why);
        plugin_free(p);
        return CHATD_EINVAL;
    }
    /* Link it before init: init registers handlers that name p. */
    if (plugins_tail)
        plugins_tail->next = p;
    else
        plugins = p;
    plugins_tail = p;
    int rc = p->desc.init(p, host, conf, &p->state);
    p->initialised = 1; /* cleanup runs even after a failed init, with the state it set */
    if (rc < 0) {
        snprintf(err, errlen, "plugin '%s': init failed (%d)", p->name, rc);
        return rc; /* unloaded with the others by plugins_unload_all */
    }
    log_info("loaded plugin %s %s from %s", p->name, p->desc.version ? p->desc.version : "?",
             p->path);
    return 0;
}

int loader_check_all(const struct settings *s, char *err, size_t errlen)
{
    size_t i;
    json_t *conf;
    json_array_foreach(s->plugins, i, conf)
    {
        struct chatd_plugin *p = open_plugin(s, conf, err, errlen);
        if (!p)
            return CHATD_EINVAL;
        plugin_free(p);
    }
    return 0;
}

void loader_print_settings(const struct settings *s)
{
    size_t i;
    json_t *conf;
    char err[512];
    json_array_foreach(s->plugins, i, conf)
    {
        json_t *copy = json_deep_copy(conf); /* the defaults filled in are not this one's */
        struct chatd_plugin *p = copy ? open_plugin(s, copy, err, sizeof err) : NULL;
        if (p && p->desc.settings)
            config_print_plugin(p->name, p->desc.settings);
        else if (p)
            printf("  plugins.%s.*: not declared by the plugin\n", p->name);
        else
            printf("  plugins.%s.*: %s\n", json_string_value(json_object_get(conf, "name")), err);
        if (p)
            plugin_free(p);
        json_decref(copy);
    }
}

int loader_load_all(const struct settings *s, const chatd_host *host, char *err, size_t errlen)
{
    size_t i;
    json_t *conf;
    json_array_foreach(s->plugins, i, conf)
    {
        int rc = load_one(s, host, conf, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void loader_unload_all(void)
{
    /* Last loaded first: a later plugin may depend on an earlier one. */
    while (plugins) {
        struct chatd_plugin *last = plugins, *prev = NULL;
        while (last->next) {
            prev = last;
            last = last->next;
        }
        if (prev)
            prev->next = NULL;
        else
            plugins = NULL;
        if (last->initialised && last->desc.cleanup && last->state)
            last->desc.cleanup(last->state);
        plugin_free(last);
    }
    plugins_tail = NULL;
    free(user_hooks);
    user_hooks = NULL;
    n_user_hooks = 0;
}

void loader_emit(const chatd_event *ev)
{
    if ((int)ev->type <= 0 || (int)ev->type >= LOADER_EVENT_TYPES)
        return;
    for (struct chatd_plugin *p = plugins; p; p = p->next)
        if (p->events[ev->type])
            p->events[ev->type](ev, p->state);
}

int loader_subscribed(chatd_event_type type)
{
    if ((int)type <= 0 || (int)type >= LOADER_EVENT_TYPES)
        return 0;
    for (struct chatd_plugin *p = plugins; p; p = p->next)
        if (p->events[type])
            return 1;
    return 0;
}

int loader_on_event(struct chatd_plugin *p, chatd_event_type type, chatd_event_handler fn)
{
    if ((int)type <= 0 || (int)type >= LOADER_EVENT_TYPES)
        return CHATD_EINVAL;
    p->events[type] = fn;
    return 0;
}

int loader_on_user_removing(struct chatd_plugin *p, chatd_user_hook fn)
{
    if (p->initialised)
        return CHATD_EINVAL; /* workers read the list without a lock: init() only */
    struct user_hook *n = realloc(user_hooks, (n_user_hooks + 1) * sizeof *n);
    if (!n)
        return CHATD_ENOMEM;
    user_hooks = n;
    user_hooks[n_user_hooks++] = (struct user_hook){p, fn};
    return 0;
}

int loader_user_removing(chatd_db *db, int64_t user_id)
{
    for (size_t i = 0; i < n_user_hooks; i++) {
        int rc = user_hooks[i].fn(db, user_id, user_hooks[i].owner->state);
        if (rc < 0)
            return rc;
    }
    return 0;
}
