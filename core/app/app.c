/* The layers started bottom up and stopped top down, as one application. */
#include "app.h"

#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "clients.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "deliver.h"
#include "dispatch.h"
#include "handshake.h"
#include "filters.h"
#include "host.h"
#include "nodes.h"
#include "http.h"
#include "listener.h"
#include "loader.h"
#include "metrics.h"
#include "online.h"
#include "presence.h"
#include "redis.h"
#include "router.h"
#include "routes.h"
#include "session.h"
#include "store.h"
#include "tls.h"
#include "ws.h"

static void accepted(struct bufferevent *bev, const char *peer)
{
    http_accept(bev, peer);
}

/* Every WebSocket is checked a few times per ping interval (or idle
 * timeout), 100 ms to 1 s: a client that answers pings is never taken for
 * idle because a tick came late. */
static int64_t sweep_ms(const struct settings *s)
{
    int64_t shorter =
        s->ws_ping_interval < s->ws_idle_timeout ? s->ws_ping_interval : s->ws_idle_timeout;
    int64_t ms = shorter * 1000 / 4;
    return ms < 100 ? 100 : ms > 1000 ? 1000 : ms;
}

static struct tls_config tls_settings(const struct settings *s)
{
    return (struct tls_config){.cert = s->tls_cert,
                               .key = s->tls_key,
                               .ciphers = s->tls_ciphers,
                               .min_version = s->tls_min_version};
}

int app_check(const struct settings *s, char *err, size_t errlen)
{
    const struct tls_config tls = tls_settings(s);
    return s->tls_cert[0] ? tls_check(&tls, err, errlen) : 0;
}

/* Start the layers bottom up, handing each its settings and the callbacks
 * it reports through; then the plugins; then the listener. */
/* The layers' settings, taken from s (at start, and again at a reload). */
struct layer_config {
    struct http_limits http;
    struct ws_limits ws;
    struct conn_limits net;
    struct dispatch_limits rates;
    struct router_config routes;
    struct handshake_config hs;
};

static void layer_config_of(const struct settings *s, struct layer_config *c)
{
    c->http = (struct http_limits){.max_head = s->http_max_head,
                                   .max_headers = s->http_max_headers,
                                   .max_body = s->http_max_body,
                                   .request_timeout = s->ws_handshake_timeout,
                                   .keepalive_timeout = s->http_keepalive_timeout,
                                   .max_outbuf = s->ws_max_outbuf};
    c->ws = (struct ws_limits){.max_message = s->ws_max_message,
                               .max_outbuf = s->ws_max_outbuf,
                               .ping_interval_ms = s->ws_ping_interval * 1000,
                               .idle_timeout_ms = s->ws_idle_timeout * 1000};
    c->net = (struct conn_limits){.max_connections = s->max_connections,
                                  .max_per_addr = s->max_connections_per_addr,
                                  .sweep_ms = sweep_ms(s)};
    c->rates = (struct dispatch_limits){.rate = s->ws_rate, .burst = s->ws_burst};
    c->routes = (struct router_config){.web_root = s->web_root,
                                       .trusted_proxies = s->trusted_proxies,
                                       .admin_token = s->admin_token};
    c->hs = (struct handshake_config){.allowed_origins = s->allowed_origins,
                                      .max_per_user = s->ws_max_per_user};
}

void app_configure(const struct settings *s)
{
    struct layer_config c;
    layer_config_of(s, &c);
    http_init(&c.http, router_handle);
    ws_set_limits(&c.ws);
    conn_set_limits(&c.net);
    dispatch_set_limits(&c.rates);
    router_configure(&c.routes);
    handshake_configure(&c.hs);
    filters_set_timeout(s->filter_timeout_ms);
}

/* Start the layers bottom up, handing each its settings and the callbacks
 * it reports through; then the plugins; then the listener. */
int app_start(struct event_base *base, const struct settings *s, int listen, char *err,
              size_t errlen)
{
    struct layer_config c;
    layer_config_of(s, &c);
    const struct presence_observer bus = {.user_interest = online_user_interest,
                                          .channel_interest = bus_channel_interest,
                                          .entered = bus_entered};
    snprintf(err, errlen, "start-up failed: out of memory");
    clock_init(base);
    http_init(&c.http, router_handle);
    if (conn_init(base, &c.net) < 0 || ws_init(base, &c.ws, &clients_ws_events) < 0 ||
        store_init(base, s, loader_sql_dir(s)) < 0 || dispatch_init(&c.rates) < 0 ||
        router_init(&c.routes, handshake_auth) < 0 || routes_init() < 0 ||
        handshake_init(&c.hs, "/ws/v1/message") < 0 || presence_init(&bus) < 0 ||
        redis_init(base, s) < 0 || bus_init(base, s, &deliver_bus_events) < 0 ||
        online_init(base, s) < 0 || nodes_init(base, s) < 0)
        return CHATD_ENOMEM;
    struct store_backend *sessions = NULL;
    err[0] = '\0';
    if ((strcmp(s->session_backend, "redis") != 0 &&
         !(sessions = store_backend_open(s->session_backend, err, errlen))) ||
        session_init(base, s, sessions) < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", err[0] ? err : "cannot load sessions");
        snprintf(err, errlen, "session store: %s", why);
        return CHATD_EINVAL;
    }
    filters_init(base, s->filter_timeout_ms);
    loader_init(base);
    if (loader_load_all(s, host_table(s->data_dir, base), err, errlen) < 0)
        return CHATD_EINVAL;
    const struct tls_config tls = tls_settings(s);
    if (listen && s->tls_cert[0] && tls_init(&tls, err, errlen) < 0)
        return CHATD_EINVAL;
    if (listen && listener_start(base, s->listen, accepted) < 0) {
        snprintf(err, errlen, "cannot listen on %s", s->listen);
        return CHATD_EINVAL;
    }
    return 0;
}

void app_reload(void)
{
    tls_reload();
}

void app_drain(void)
{
    listener_stop();
    conn_drain_all();
}

int app_idle(void)
{
    return store_in_flight() == 0 && conn_count() == 0;
}

void app_stop(void)
{
    /* Completed jobs may still answer clients: stop the workers first, then
     * close the sockets (plugins hear CONN_CLOSED), then unload the plugins. */
    store_shutdown();
    listener_stop();
    conn_free_all();
    tls_free();
    ws_free();
    loader_unload_all();
    filters_free();
    host_plugins_gone();
    online_free();
    nodes_free();
    bus_free();
    redis_free();
    session_free_all();
    presence_free();
    router_free();
    dispatch_free();
    metrics_free();
}
