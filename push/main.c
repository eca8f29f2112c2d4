/*
 * chatd-push: the push worker. Reads the notifications the chat nodes add
 * to a Redis stream (plugins.push.backend = "redis") as one consumer of a
 * group, and POSTs each to the webhook (plugins.push.url) as the chat node's
 * webhook backend does. Any number run side by side; see docs/OPERATIONS.md.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "settings.h"
#include "worker.h"

#ifndef CHATD_VERSION
#define CHATD_VERSION "0"
#endif
#ifndef CHATD_DEFAULT_CONF
#define CHATD_DEFAULT_CONF "/usr/local/etc/chatd/chatd.conf"
#endif

#define LOG(level, ...) log_msg(level, "chatd-push", __VA_ARGS__)

static struct {
    struct event_base *base;
    struct settings s;
    struct pconf c;
    struct worker *w;
    struct event *sigs[3], *drain, *stats;
    int64_t deadline_ms;
    int saying_goodbye;
} app;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chatd-push [-c FILE] [--set PATH=VALUE]... [--check-config]\n"
            "                  [--version] [--help]\n"
            "\n"
            "Delivers the push notifications chat nodes add to a Redis stream\n"
            "(plugins.push.backend = \"redis\") to plugins.push.url. Reads chatd's\n"
            "configuration file: redis.host, redis.port, redis.reconnect_max_ms, log.*\n"
            "and the plugins entry named \"push\".\n"
            "\n"
            "  -c, --config FILE     configuration file (default %s)\n"
            "  --set PATH=VALUE      override any setting, as chatd --set does\n"
            "                        (plugins.push.SETTING for the push settings)\n"
            "  --check-config        validate the configuration and exit\n"
            "  --version             print the version and exit\n"
            "\nplugins.push settings read here, and defaults:\n",
            CHATD_DEFAULT_CONF);
    pconf_print(f);
}

static void log_stats(const char *when)
{
    struct wstats st;
    worker_stats(app.w, &st);
    LOG(CHATD_LOG_INFO,
        "stats%s: read %llu, claimed %llu, delivered %llu, failed %llu, dead %llu, "
        "dropped %llu, abandoned %llu, held %zu, posting %zu, redis connections lost %llu",
        when, (unsigned long long)st.read, (unsigned long long)st.claimed,
        (unsigned long long)st.delivered, (unsigned long long)st.failed,
        (unsigned long long)st.dead, (unsigned long long)st.dropped,
        (unsigned long long)st.abandoned, st.held, st.posting, (unsigned long long)st.redis_losses);
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    log_stats("");
}

static void said_goodbye(void *arg)
{
    (void)arg;
    event_base_loopexit(app.base, NULL);
}

/* While stopping: done once nothing is under way, or at the deadline. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (clock_now_ms() >= app.deadline_ms) {
        if (worker_busy(app.w))
            LOG(CHATD_LOG_WARN,
                "shutdown: %zu entries still under way at the deadline: left "
                "pending for other workers",
                worker_busy(app.w));
        event_base_loopexit(app.base, NULL);
    } else if (!worker_busy(app.w) && !app.saying_goodbye) {
        app.saying_goodbye = 1;
        worker_goodbye(app.w, said_goodbye, NULL);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what, (void)arg;
    if (sig == SIGHUP) {
        log_reopen();
        LOG(CHATD_LOG_INFO, "log reopened");
        return;
    }
    if (app.drain) {
        LOG(CHATD_LOG_INFO, "second signal: stopping now");
        event_base_loopexit(app.base, NULL);
        return;
    }
    LOG(CHATD_LOG_INFO, "shutting down: %zu entries held, the POSTs under way finish",
        worker_busy(app.w));
    worker_stop(app.w);
    app.deadline_ms = clock_now_ms() + app.c.shutdown_timeout_ms;
    struct timeval tick = {0, 20000};
    if ((app.drain = event_new(app.base, -1, EV_PERSIST, on_drain, NULL)))
        event_add(app.drain, &tick);
    else
        event_base_loopexit(app.base, NULL);
}

static void started(void)
{
    char url[512];
    pconf_url_for_log(app.c.url, url, sizeof url);
    LOG(CHATD_LOG_INFO,
        "chatd-push %s starting: stream %s, group %s, consumer %s; POST to %s%s; "
        "max_in_flight %lld, max_attempts %lld, claim_after_ms %lld",
        CHATD_VERSION, app.c.stream, app.c.group, app.c.consumer, url,
        app.c.secret && app.c.secret[0] ? " (signed)" : "", (long long)app.c.max_in_flight,
        (long long)app.c.max_attempts, (long long)app.c.claim_after_ms);
}

/* The loop, from start-up to a clean stop: the exit status. */
static int serve(void)
{
    char err[256] = "";
    started();
    if (!(app.base = event_base_new())) {
        LOG(CHATD_LOG_ERROR, "cannot create the event loop");
        return 1;
    }
    clock_init(app.base);
    int rc = 1;
    if (!(app.w = worker_new(app.base, &app.c, err, sizeof err))) {
        LOG(CHATD_LOG_ERROR, "%s", err);
    } else {
        const int nums[] = {SIGTERM, SIGINT, SIGHUP};
        for (int i = 0; i < 3; i++)
            if ((app.sigs[i] = evsignal_new(app.base, nums[i], on_signal, NULL)))
                event_add(app.sigs[i], NULL);
        int64_t ms = app.c.stats_interval_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        if (ms > 0 && (app.stats = event_new(app.base, -1, EV_PERSIST, on_stats, NULL)))
            event_add(app.stats, &tv);
        event_base_dispatch(app.base);
        log_stats(" at exit");
        LOG(CHATD_LOG_INFO, "stopped");
        rc = 0;
    }
    worker_free(app.w);
    struct event *events[] = {app.sigs[0], app.sigs[1], app.sigs[2], app.drain, app.stats};
    for (int i = 0; i < 5; i++)
        if (events[i])
            event_free(events[i]);
    event_base_free(app.base);
    return rc;
}

struct args {
    const char *conf;
    char **overrides;
    int n_over;
    int check_only;
};

/* Parse the command line into a: -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"check-config", no_argument, NULL, 'k'}, {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int opt;
    if (!(a->overrides = calloc((size_t)argc + 1, sizeof *a->overrides)))
        return 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            a->conf = optarg;
            break;
        case 's':
            a->overrides[a->n_over++] = optarg;
            break;
        case 'k':
            a->check_only = 1;
            break;
        case 'v':
            printf("chatd-push %s\n", CHATD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chatd-push: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!a->conf) {
        struct stat sb;
        a->conf = stat(CHATD_DEFAULT_CONF, &sb) == 0 ? CHATD_DEFAULT_CONF : NULL;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct args a = {0};
    char err[1024] = "";
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        goto out;
    rc = 2; /* the settings are wrong */
    if (config_load(a.conf, (const char *const *)a.overrides, a.n_over, &app.s, err, sizeof err) <
        0) {
        fprintf(stderr, "chatd-push: %s\n", err);
        goto out;
    }
    if (pconf_read(&app.s, a.conf, &app.c, err, sizeof err) < 0) {
        fprintf(stderr, "chatd-push: %s\n", err);
    } else if (a.check_only) {
        printf("%s: configuration is valid\n", a.conf ? a.conf : "(defaults)");
        rc = 0;
    } else if (log_open(app.s.log_file, (chatd_log_level)log_level_parse(app.s.log_level)) < 0) {
        fprintf(stderr, "chatd-push: cannot open log file %s: %s\n", app.s.log_file,
                strerror(errno));
        rc = 1;
    } else {
        signal(SIGPIPE, SIG_IGN);
        rc = serve();
        log_close();
    }
    config_free(&app.s);
out:
    free(a.overrides);
    return rc;
}
