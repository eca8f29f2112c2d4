#include "routes.h"

#include <event2/buffer.h>

#include "http.h"
#include "metrics.h"
#include "presence.h"
#include "redis.h"
#include "router.h"
#include "session.h"
#include "store.h"

static void healthz_done(void *arg, int ok)
{
    struct chatd_http *req = arg;
    if (redis_enabled() && !redis_ready())
        ok = 0;
    if (ok)
        http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"), NULL);
    else
        http_respond_json(req, 503, json_pack("{s:s}", "status", "unavailable"), NULL);
}

static int route_healthz(chatd_http *req, void *state)
{
    (void)state;
    if (store_health_check(healthz_done, req) < 0)
        return http_respond_error(req, CHATD_ERR_INTERNAL, 500, "out of memory"), CHATD_OK;
    return CHATD_PENDING;
}

static int route_metrics(chatd_http *req, void *state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_respond_error(req, CHATD_ERR_INTERNAL, 500, "out of memory");
        return CHATD_OK;
    }
    metrics_gauge("job_queue_depth", store_queue_depth());
    metrics_gauge("jobs_in_flight", store_in_flight());
    metrics_gauge("sessions", (int64_t)session_count());
    metrics_gauge("online_users", presence_users());
    metrics_gauge("entered_channels", presence_channel_count());
    metrics_gauge("entered_clients", presence_entered_count());
    metrics_render(b);
    size_t n = evbuffer_get_length(b);
    http_respond(req, 200, "text/plain; version=0.0.4", evbuffer_pullup(b, -1), n, NULL);
    evbuffer_free(b);
    return CHATD_OK;
}

int routes_init(void)
{
    int rc = router_add(NULL, "GET", "/healthz", 0, route_healthz, NULL);
    return rc < 0 ? rc : router_add(NULL, "GET", "/metrics", 0, route_metrics, NULL);
}
