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
#ifdef CHATD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "app.h"
#include "clock.h"
#include "config.h"
#include "loader.h"
#include "log.h"
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
    const char *conf;             /* the file to read again at SIGHUP */
    const char *const *overrides; /* and the --set of the command line */
    int n_overrides;
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer;
    int64_t drain_deadline_ms;
} app;

/* Tell systemd (Type=notify) how start-up and shutdown go: a no-op when
 * NOTIFY_SOCKET is unset, or when chatd was built without libsystemd. */
static void notify(const char *state)
{
#ifdef CHATD_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

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

/* --help: the core's settings, then those of the plugins of the
 * configuration (without one, of the plugins chatd ships). */
static int help(struct settings *s)
{
    static const char *const shipped[] = {"auth",      "connection", "channel",
                                          "messaging", "push",       NULL};
    usage(stdout);
    if (json_array_size(s->plugins) == 0)
        for (int i = 0; shipped[i]; i++)
            json_array_append_new(s->plugins, json_pack("{s:s}", "name", shipped[i]));
    printf("\nplugin settings and defaults:\n");
    fflush(stdout);
    loader_print_settings(s);
    return 0;
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

/* While draining: stop once the queues are empty and the sockets closed, or at the deadline. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (app_idle() || clock_now_ms() >= app.drain_deadline_ms) {
        if (store_in_flight() > 0)
            log_warn("shutdown: %ld jobs still queued at the deadline", store_in_flight());
        event_base_loopexit(app.base, NULL);
    }
}

/* SIGHUP: read the file again; what may change live takes effect now (no
 * connection dropped), what needs a restart is named; a broken file changes
 * nothing and says why. */
static void reload(void)
{
    struct settings next;
    char err[1024] = "", applied[1024], restart[1024];
    if (config_load(app.conf, app.overrides, app.n_overrides, &next, err, sizeof err) < 0 ||
        loader_check_all(&next, err, sizeof err) < 0) {
        if (next.plugins)
            config_free(&next);
        log_error("reload: %s; nothing changed", err);
        return;
    }
    int n = config_apply_live(&app.s, &next, applied, sizeof applied, restart, sizeof restart);
    config_free(&next);
    if (n) {
        app_configure(&app.s);
        log_set_level((chatd_log_level)log_level_parse(app.s.log_level));
        log_set_format((enum log_format)log_format_parse(app.s.log_format));
        if (strstr(applied, "log.file") && app.s.log_file[0] && log_switch(app.s.log_file) < 0)
            log_error("reload: cannot open log file %s: %s", app.s.log_file, strerror(errno));
    }
    log_info("reload: %s%s%s%s", n ? "applied " : "nothing to apply", applied,
             restart[0] ? "; needs a restart to take effect: " : "", restart);
    chatd_event ev = {.type = CHATD_EVENT_RELOAD};
    loader_emit(&ev); /* plugins read their own files again */
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what, (void)arg;
    if (sig == SIGHUP) {
        notify("RELOADING=1"); /* systemctl reload waits for the READY=1 */
        log_reopen();
        log_info("log reopened");
        app_reload();
        reload();
        notify("READY=1");
        return;
    }
    if (app.drain_timer) {
        log_info("second signal: stopping now");
        event_base_loopexit(app.base, NULL);
        return;
    }
    log_info("shutting down: draining connections and queued writes");
    notify("STOPPING=1");
    app_drain();
    app.drain_deadline_ms = clock_now_ms() + app.s.shutdown_timeout * 1000;
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

/* What the command line asks for. */
struct args {
    const char *conf;
    char **overrides;
    int n_over;
    int check_only;
    int help;
};

static void args_free(struct args *a)
{
    for (int i = 0; i < a->n_over; i++)
        free(a->overrides[i]);
    free(a->overrides);
}

/* Parse the command line into a: -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'}, {"set", required_argument, NULL, 's'},
        {"check-config", no_argument, NULL, 'k'},   {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    char *listen = NULL, *data_dir = NULL;
    int opt;
    if (!(a->overrides = calloc((size_t)argc + 1, sizeof *a->overrides)))
        return 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            a->conf = optarg;
            break;
        case 'l':
            free(listen);
            listen = string_override("server.listen", optarg);
            break;
        case 'd':
            free(data_dir);
            data_dir = string_override("server.data_dir", optarg);
            break;
        case 's':
            a->overrides[a->n_over++] = strdup(optarg);
            break;
        case 'k':
            a->check_only = 1;
            break;
        case 'v':
            printf("chatd %s (plugin ABI %d.%d)\n", CHATD_VERSION, CHATD_ABI_MAJOR,
                   CHATD_ABI_MINOR);
            free(listen), free(data_dir);
            return 0;
        case 'h':
            a->help = 1;
            break;
        default:
            usage(stderr);
            free(listen), free(data_dir);
            return 2;
        }
    }
    /* the shorthands come last: they win over --set of the same setting */
    if (listen)
        a->overrides[a->n_over++] = listen;
    if (data_dir)
        a->overrides[a->n_over++] = data_dir;
    if (optind < argc) {
        fprintf(stderr, "chatd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!a->conf) {
        struct stat sb;
        a->conf = stat(CHATD_DEFAULT_CONF, &sb) == 0 ? CHATD_DEFAULT_CONF : NULL;
    }
    return -1;
}

/* The loop, from start-up to a clean stop: the exit status. */
static int serve(const char *conf)
{
    char err[1024] = "";
    int rc = 1;
    if (ensure_dir(app.s.data_dir) < 0) {
        log_error("cannot create data directory %s: %s", app.s.data_dir, strerror(errno));
        return 1;
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
        return 1;
    }
    if (app_start(app.base, &app.s, 1, err, sizeof err) < 0) {
        log_error("%s", err);
    } else {
        struct event **sigs[] = {&app.sig_term, &app.sig_int, &app.sig_hup};
        const int nums[] = {SIGTERM, SIGINT, SIGHUP};
        for (int i = 0; i < 3; i++)
            if ((*sigs[i] = evsignal_new(app.base, nums[i], on_signal, NULL)))
                event_add(*sigs[i], NULL);
        log_info("ready");
        notify("READY=1"); /* the listener accepts: systemd may start what needs chatd */
        event_base_dispatch(app.base);
        rc = 0;
        log_info("stopped");
    }
    app_stop();
    struct event *events[] = {app.sig_term, app.sig_int, app.sig_hup, app.drain_timer};
    for (int i = 0; i < 4; i++)
        if (events[i])
            event_free(events[i]);
    event_base_free(app.base);
    return rc;
}

int main(int argc, char **argv)
{
    struct args a = {0};
    char err[1024] = "";
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        goto out;
    rc = 1;
    if (config_load(a.conf, (const char *const *)a.overrides, a.n_over, &app.s, err, sizeof err) <
        0) {
        fprintf(stderr, "chatd: %s\n", err);
        if (a.help) {
            usage(stdout);
            rc = 0;
        }
        goto out;
    }
    /* from here on log lines (a plugin's settings checked) are in log.format */
    log_set_format((enum log_format)log_format_parse(app.s.log_format));
    if (a.help) {
        rc = help(&app.s);
    } else if (a.check_only) {
        if (loader_check_all(&app.s, err, sizeof err) < 0 ||
            app_check(&app.s, err, sizeof err) < 0) {
            fprintf(stderr, "chatd: %s\n", err);
        } else {
            printf("%s: configuration is valid\n", a.conf ? a.conf : "(defaults)");
            rc = 0;
        }
    } else if (loader_check_all(&app.s, err, sizeof err) < 0) {
        fprintf(stderr, "chatd: %s\n", err); /* before anything is started or written */
    } else if (log_open(app.s.log_file, (chatd_log_level)log_level_parse(app.s.log_level)) < 0) {
        fprintf(stderr, "chatd: cannot open log file %s: %s\n", app.s.log_file, strerror(errno));
    } else {
        signal(SIGPIPE, SIG_IGN);
        /* A file past its size limit is a failed write (EFBIG), as a full disk
         * is, not a reason to die. */
        signal(SIGXFSZ, SIG_IGN);
        app.conf = a.conf;
        app.overrides = (const char *const *)a.overrides;
        app.n_overrides = a.n_over;
        rc = serve(a.conf);
        log_close();
    }
    config_free(&app.s);
out:
    args_free(&a);
    return rc;
}
