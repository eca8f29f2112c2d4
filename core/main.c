/* chatd: command line, start-up, signals, orderly shutdown. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "bus.h"
#include "dispatch.h"
#include "log.h"
#include "metrics.h"
#include "plugins.h"
#include "presence.h"
#include "redis.h"
#include "router.h"
#include "server.h"
#include "session.h"
#include "store.h"

#ifndef CHATD_VERSION
#define CHATD_VERSION "0"
#endif
#ifndef CHATD_DEFAULT_CONF
#define CHATD_DEFAULT_CONF "/usr/local/etc/chatd/chatd.conf"
#endif

static struct {
    struct event_base *base;
    struct settings s;
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer;
    int64_t drain_deadline_ms;
} app;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chatd [-c FILE] [--listen HOST:PORT] [--data-dir DIR]\n"
            "             [--set PATH=VALUE]... [--check-config] [--version] [--help]\n"
            "\n"
            "  -c, --config FILE     configuration file (default %s)\n"
            "  --listen HOST:PORT    override server.listen (port 0: any free port)\n"
            "  --data-dir DIR        override server.data_dir\n"
            "  --set PATH=VALUE      override any setting; VALUE is read as a libconfig\n"
            "                        value (number, true/false, \"text\", [list]), else as a\n"
            "                        string. Plugin settings: plugins.NAME.SETTING\n"
            "  --check-config        validate the configuration and exit\n"
            "  --version             print the version and exit\n"
            "\nsettings and defaults:\n",
            CHATD_DEFAULT_CONF);
    config_print_schema();
}

/* "path=\"value\"" with libconfig string escapes, so the value stays a string. */
static char *string_override(const char *path, const char *value)
{
    size_t n = strlen(path) + 2 * strlen(value) + 4;
    char *o = malloc(n), *q = o;
    if (!o)
        return NULL;
    q += sprintf(q, "%s=\"", path);
    for (const char *v = value; *v; v++) {
        if (*v == '"' || *v == '\\')
            *q++ = '\\';
        *q++ = *v;
    }
    *q++ = '"';
    *q = '\0';
    return o;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* While draining: stop once the queues are empty and the sockets closed, or at the deadline. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if ((store_in_flight() == 0 && server_connection_count() == 0) ||
        mono_ms() >= app.drain_deadline_ms) {
        if (store_in_flight() > 0)
            log_warn("shutdown: %ld jobs still queued at the deadline", store_in_flight());
        event_base_loopexit(app.base, NULL);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what, (void)arg;
    if (sig == SIGHUP) {
        log_reopen();
        log_info("log reopened");
        return;
    }
    if (app.drain_timer) {
        log_info("second signal: stopping now");
        event_base_loopexit(app.base, NULL);
        return;
    }
    log_info("shutting down: draining connections and queued writes");
    server_drain();
    app.drain_deadline_ms = mono_ms() + app.s.shutdown_timeout * 1000;
    app.drain_timer = event_new(app.base, -1, EV_PERSIST, on_drain_tick, NULL);
    struct timeval tick = {0, 20000};
    event_add(app.drain_timer, &tick);
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0750) == 0 || errno == EEXIST)
        return 0;
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'}, {"set", required_argument, NULL, 's'},
        {"check-config", no_argument, NULL, 'k'},   {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *conf = NULL;
    char **overrides = calloc((size_t)argc + 1, sizeof *overrides);
    int n_over = 0, check_only = 0, rc = 1, opt;
    char *listen = NULL, *data_dir = NULL;
    char err[1024] = "";
    if (!overrides)
        return 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'l': free(listen); listen = string_override("server.listen", optarg); break;
        case 'd': free(data_dir); data_dir = string_override("server.data_dir", optarg); break;
        case 's': overrides[n_over++] = strdup(optarg); break;
        case 'k': check_only = 1; break;
        case 'v': printf("chatd %s (plugin ABI %d.%d)\n", CHATD_VERSION, CHATD_ABI_MAJOR, CHATD_ABI_MINOR); rc = 0; goto out_args;
        case 'h': usage(stdout); rc = 0; goto out_args;
        default: usage(stderr); rc = 2; goto out_args;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chatd: unexpected argument '%s'\n", argv[optind]);
        rc = 2;
        goto out_args;
    }
    if (listen)
        overrides[n_over++] = listen, listen = NULL;
    if (data_dir)
        overrides[n_over++] = data_dir, data_dir = NULL;
    if (!conf) {
        struct stat sb;
        conf = stat(CHATD_DEFAULT_CONF, &sb) == 0 ? CHATD_DEFAULT_CONF : NULL;
    }
    if (config_load(conf, (const char *const *)overrides, n_over, &app.s, err, sizeof err) < 0) {
        fprintf(stderr, "chatd: %s\n", err);
        rc = 1;
        goto out_args;
    }
    int level = log_level_parse(app.s.log_level);
    if (level < 0) {
        fprintf(stderr, "chatd: %s: setting 'log.level': '%s' is not error, warn, info or debug\n",
                conf ? conf : "(defaults)", app.s.log_level);
        goto out_config;
    }
    if (check_only) {
        printf("%s: configuration is valid\n", conf ? conf : "(defaults)");
        rc = 0;
        goto out_config;
    }
    if (log_open(app.s.log_file, (chatd_log_level)level) < 0) {
        fprintf(stderr, "chatd: cannot open log file %s: %s\n", app.s.log_file, strerror(errno));
        goto out_config;
    }
    signal(SIGPIPE, SIG_IGN);
    /* A file past its size limit is a failed write (EFBIG), as a full disk is,
     * not a reason to die. */
    signal(SIGXFSZ, SIG_IGN);
    if (ensure_dir(app.s.data_dir) < 0) {
        log_error("cannot create data directory %s: %s", app.s.data_dir, strerror(errno));
        goto out_log;
    }
    log_info("chatd %s starting (config %s, data %s)", CHATD_VERSION, conf ? conf : "(defaults)",
             app.s.data_dir);
    evthread_use_pthreads();
    /* The changelist folds the enable/disable of write interest that every
     * bufferevent write makes into one epoll_ctl per loop turn, or none. */
    struct event_config *ecfg = event_config_new();
    if (ecfg)
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    app.base = ecfg ? event_base_new_with_config(ecfg) : NULL;
    if (ecfg)
        event_config_free(ecfg);
    if (!app.base) {
        log_error("cannot create the event loop");
        goto out_log;
    }
    struct store_backend *sessions_backend = NULL;
    if (store_init(app.base, &app.s, chatd_sql_dir(&app.s)) < 0 || dispatch_init() < 0 ||
        router_init(&app.s) < 0 || presence_init() < 0) {
        log_error("start-up failed: out of memory");
        goto out_base;
    }
    if (redis_init(app.base, &app.s) < 0 || bus_init(app.base, &app.s) < 0) {
        log_error("start-up failed: out of memory");
        goto out_store;
    }
    if ((strcmp(app.s.session_backend, "redis") != 0 &&
         !(sessions_backend = store_backend_open(app.s.session_backend, err, sizeof err))) ||
        session_init(app.base, &app.s, sessions_backend) < 0) {
        log_error("session store: %s", err[0] ? err : "cannot load sessions");
        goto out_store;
    }
    if (plugins_load_all(&app.s, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out_plugins;
    }
    if (server_start(app.base, &app.s) < 0)
        goto out_plugins;
    app.sig_term = evsignal_new(app.base, SIGTERM, on_signal, NULL);
    app.sig_int = evsignal_new(app.base, SIGINT, on_signal, NULL);
    app.sig_hup = evsignal_new(app.base, SIGHUP, on_signal, NULL);
    event_add(app.sig_term, NULL);
    event_add(app.sig_int, NULL);
    event_add(app.sig_hup, NULL);
    log_info("ready");
    event_base_dispatch(app.base);
    rc = 0;
    log_info("stopped");
out_plugins:
out_store:
    /* Completed jobs may still answer clients: stop the workers first, then
     * close the sockets (plugins hear CONN_CLOSED), then unload the plugins. */
    store_shutdown();
    server_free();
    plugins_unload_all();
    bus_free();
    redis_free();
    session_free_all();
    presence_free();
    router_free();
    dispatch_free();
    metrics_free();
    if (app.sig_term)
        event_free(app.sig_term);
    if (app.sig_int)
        event_free(app.sig_int);
    if (app.sig_hup)
        event_free(app.sig_hup);
    if (app.drain_timer)
        event_free(app.drain_timer);
out_base:
    event_base_free(app.base);
out_log:
    log_close();
out_config:
    config_free(&app.s);
out_args:
    for (int i = 0; i < n_over; i++)
        free(overrides[i]);
    free(overrides);
    free(listen);
    free(data_dir);
    return rc;
}
