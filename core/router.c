#include "router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "errors.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "plugins.h"
#include "presence.h"
#include "redis.h"
#include "session.h"
#include "store.h"
#include "ws.h"

struct route {
    struct chatd_plugin *owner; /* NULL: the core's */
    int method;
    char *path;
    int flags;
    chatd_http_handler fn;
};

static struct {
    const struct settings *s;
    struct route *routes;
    size_t n;
} rt;

const struct settings *router_settings(void)
{
    return rt.s;
}

static int method_parse(const char *name)
{
    for (int m = 0; m < 40; m++) {
        const char *n = http_method_str((enum http_method)m);
        if (n && strcmp(n, name) == 0)
            return m;
    }
    return -1;
}

int router_add(struct chatd_plugin *owner, const char *method, const char *path, int flags,
               chatd_http_handler fn, void *state)
{
    (void)state;
    int m = method_parse(method);
    if (m < 0 || !path || path[0] != '/' || !fn)
        return CHATD_EINVAL;
    for (size_t i = 0; i < rt.n; i++)
        if (rt.routes[i].method == m && strcmp(rt.routes[i].path, path) == 0)
            return CHATD_ECONFLICT;
    struct route *nr = realloc(rt.routes, (rt.n + 1) * sizeof *nr);
    if (!nr)
        return CHATD_ENOMEM;
    rt.routes = nr;
    char *p = strdup(path);
    if (!p)
        return CHATD_ENOMEM;
    rt.routes[rt.n++] = (struct route){owner, m, p, flags, fn};
    return 0;
}

void router_remove_owner(struct chatd_plugin *owner)
{
    size_t j = 0;
    for (size_t i = 0; i < rt.n; i++) {
        if (rt.routes[i].owner == owner && owner) {
            free(rt.routes[i].path);
            continue;
        }
        rt.routes[j++] = rt.routes[i];
    }
    rt.n = j;
}

const char *router_token(const struct chatd_http *req, int allow_query, char *buf, size_t len)
{
    const char *v = http_header_get(req, "Authorization");
    if (v && strncasecmp(v, "Bearer ", 7) == 0) {
        v += 7;
        while (*v == ' ')
            v++;
        if (strlen(v) < len) {
            strcpy(buf, v);
            return buf;
        }
    }
    v = http_header_get(req, "Cookie");
    for (const char *p = v; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 12 && strncmp(p, "CHATSESSION=", 12) == 0 && n - 12 < len) {
            memcpy(buf, p + 12, n - 12);
            buf[n - 12] = '\0';
            return buf;
        }
        p = end;
    }
    if (allow_query)
        return http_query_get(req->query, "access_token", buf, len);
    return NULL;
}

/* ---- core routes ---- */

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
    metrics_render(b);
    size_t n = evbuffer_get_length(b);
    http_respond(req, 200, "text/plain; version=0.0.4", evbuffer_pullup(b, -1), n, NULL);
    evbuffer_free(b);
    return CHATD_OK;
}

static int has_token(const char *list, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (strncasecmp(p, token, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return 1;
        p = strchr(p, ',');
    }
    return 0;
}

/* No session for the request: 401, or 503 when the session store is down. */
static void reject_no_session(chatd_http *req, int status)
{
    if (status == CHATD_EUNAVAIL)
        http_respond_error(req, CHATD_ERR_UNAVAILABLE, 503, "session store unavailable");
    else
        http_respond_error(req, CHATD_ERR_UNAUTHORIZED, 401, "no valid session");
}

/* The handshake's session is known (or not): upgrade, or say why not. */
static void ws_authed(struct session *s, int status, void *arg)
{
    chatd_http *req = arg;
    if (!s) {
        reject_no_session(req, status);
        return;
    }
    int open = 0;
    for (struct conn *c = presence_user_conns(session_user_id(s)); c; c = c->u_next)
        open++;
    if (open >= rt.s->ws_max_per_user) {
        http_respond_error(req, CHATD_ERR_LIMIT_EXCEEDED, 429,
                           "too many WebSockets for this user (ws.max_connections_per_user)");
        return;
    }
    ws_upgrade(req, s);
}

static int route_ws(chatd_http *req, void *state)
{
    (void)state;
    const char *key = http_header_get(req, "Sec-WebSocket-Key");
    const char *version = http_header_get(req, "Sec-WebSocket-Version");
    if (!req->upgrade || !has_token(http_header_get(req, "Upgrade"), "websocket") ||
        !has_token(http_header_get(req, "Connection"), "upgrade") || !key || strlen(key) != 24) {
        http_respond_error(req, CHATD_ERR_BAD_REQUEST, 400, "bad WebSocket handshake");
        return CHATD_OK;
    }
    if (!version || strcmp(version, "13") != 0) {
        http_respond(req, 400, "application/json",
                     "{\"error\":\"BAD_REQUEST\",\"message\":\"WebSocket version 13 only\"}", 61,
                     "Sec-WebSocket-Version: 13\r\n");
        return CHATD_OK;
    }
    const char *origin = http_header_get(req, "Origin");
    if (origin && rt.s->allowed_origins[0]) {
        int ok = 0;
        for (char **o = rt.s->allowed_origins; *o && !ok; o++)
            ok = strcmp(*o, origin) == 0;
        if (!ok) {
            http_respond_error(req, CHATD_ERR_FORBIDDEN, 403, "origin not allowed");
            return CHATD_OK;
        }
    }
    char tok[128];
    session_lookup(router_token(req, 1, tok, sizeof tok), ws_authed, req);
    return CHATD_PENDING;
}

static const char *content_type_for(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".json", "application/json"},
        {".svg", "image/svg+xml"},             {".png", "image/png"},
        {".ico", "image/x-icon"},              {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

/* Serve a file under http.web_root; no "..", no hidden files. */
static void serve_static(chatd_http *req)
{
    const char *p = req->path;
    if (strstr(p, "/.") || strchr(p, '\\')) {
        http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
        return;
    }
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s%s%s", rt.s->web_root, p,
                     p[strlen(p) - 1] == '/' ? "index.html" : "");
    struct stat sb;
    int fd = n > 0 && (size_t)n < sizeof path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > (64 << 20)) {
        if (fd >= 0)
            close(fd);
        http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
        return;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    ssize_t got = buf ? read(fd, buf, (size_t)sb.st_size) : -1;
    close(fd);
    if (got != sb.st_size) {
        free(buf);
        http_respond_error(req, CHATD_ERR_INTERNAL, 500, "cannot read file");
        return;
    }
    http_respond(req, 200, content_type_for(path), buf, (size_t)got, NULL);
    free(buf);
}

int router_init(const struct settings *s)
{
    rt.s = s;
    if (router_add(NULL, "GET", "/healthz", 0, route_healthz, NULL) < 0 ||
        router_add(NULL, "GET", "/metrics", 0, route_metrics, NULL) < 0 ||
        router_add(NULL, "GET", "/ws/v1/message", 0, route_ws, NULL) < 0)
        return CHATD_ENOMEM;
    return 0;
}

/* Call a route's handler; answer for it if it returned without answering. */
static void run_route(struct route *r, struct chatd_http *req)
{
    uint64_t id = req->conn_id;
    int rc = r->fn(req, r->owner ? plugin_state(r->owner) : NULL);
    if (rc == CHATD_PENDING)
        return;
    struct conn *still = conn_find(id);
    if (still && still->pending == req) {
        if (rc == CHATD_DECLINED) {
            http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
        } else {
            log_error("route %s %s returned without a reply", http_method_name(req->method),
                      req->path);
            http_respond_error(req, CHATD_ERR_INTERNAL, 500, "handler gave no reply");
        }
    }
}

static void route_authed(struct session *s, int status, void *arg)
{
    struct chatd_http *req = arg;
    if (!s) {
        reject_no_session(req, status);
        return;
    }
    snprintf(req->session_key, sizeof req->session_key, "%s", session_key(s));
    req->user_id = session_user_id(s);
    run_route(&rt.routes[req->route], req);
}

/* Behind a trusted balancer, the client is the last address it appended to
 * X-Forwarded-For (earlier ones are whatever the client claimed). */
static void apply_forwarded(struct chatd_http *req)
{
    const char *xff = http_header_get(req, "X-Forwarded-For");
    int trusted = 0;
    for (char **p = rt.s->trusted_proxies; xff && *p && !trusted; p++)
        trusted = strcmp(*p, req->peer) == 0;
    if (!trusted)
        return;
    const char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ')
        last++;
    char addr[48];
    size_t n = strcspn(last, " ");
    unsigned char probe[16];
    if (n == 0 || n >= sizeof addr)
        return;
    memcpy(addr, last, n);
    addr[n] = '\0';
    if (inet_pton(AF_INET, addr, probe) == 1 || inet_pton(AF_INET6, addr, probe) == 1)
        memcpy(req->peer, addr, n + 1);
}

void router_handle(struct conn *c, struct chatd_http *req)
{
    (void)c;
    apply_forwarded(req);
    struct route *match = NULL;
    /* HEAD is answered as GET would be, without the body (http_respond drops it). */
    int method = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    char allow[128] = "";
    for (size_t i = 0; i < rt.n && !match; i++) {
        if (strcmp(rt.routes[i].path, req->path) != 0)
            continue;
        if (rt.routes[i].method == method)
            match = &rt.routes[i];
        else
            snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                     allow[0] ? ", " : "Allow: ", http_method_name(rt.routes[i].method));
    }
    if (!match) {
        if (allow[0]) {
            if (strstr(allow, "GET"))
                strncat(allow, ", HEAD", sizeof allow - strlen(allow) - 1);
            strncat(allow, "\r\n", sizeof allow - strlen(allow) - 1);
            http_respond_json(req, 405,
                              json_pack("{s:s, s:s}", "error", error_code_name(CHATD_ERR_BAD_REQUEST), "message",
                                        "method not allowed"),
                              allow);
        } else if (rt.s->web_root[0] && method == HTTP_GET)
            serve_static(req);
        else
            http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
        return;
    }
    if (req->upgrade && match->fn != route_ws) {
        http_respond_error(req, CHATD_ERR_BAD_REQUEST, 400, "no upgrade here");
        return;
    }
    if (match->flags & CHATD_HTTP_AUTH) {
        char tok[128];
        req->route = (int)(match - rt.routes);
        session_lookup(router_token(req, 0, tok, sizeof tok), route_authed, req);
        return;
    }
    run_route(match, req);
}

void router_free(void)
{
    for (size_t i = 0; i < rt.n; i++)
        free(rt.routes[i].path);
    free(rt.routes);
    memset(&rt, 0, sizeof rt);
}
