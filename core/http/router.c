#include "router.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "actor.h"
#include "conn.h"
#include "errors.h"
#include "http.h"
#include "log.h"
#include "static.h"

struct route {
    void *owner; /* NULL: the core's */
    int method;
    char *path;
    int flags;
    chatd_http_handler fn;
    void *state;
};

static struct {
    struct router_config cfg;
    router_auth_fn auth;
    struct route *routes;
    size_t n;
} rt;

int router_init(const struct router_config *cfg, router_auth_fn auth)
{
    rt.cfg = *cfg;
    rt.auth = auth;
    return 0;
}

void router_configure(const struct router_config *cfg)
{
    rt.cfg = *cfg;
}

static int admin_on(void)
{
    return rt.cfg.admin_token && rt.cfg.admin_token[0];
}

/* Whether the route is there for a request that came on listener: an admin
 * route only with a token set, and with an admin listener, only on it, which
 * has nothing else but ROUTE_ADMIN_LISTENER routes. */
static int route_visible(const struct route *r, int listener)
{
    int admin = r->flags & CHATD_HTTP_ADMIN;
    if (admin && !admin_on())
        return 0; /* no admin token: the operators' routes are not there */
    if (!rt.cfg.admin_listener)
        return 1;
    if (listener == CONN_LISTENER_ADMIN)
        return admin || r->flags & ROUTE_ADMIN_LISTENER;
    return !admin; /* not even a 401 on the main listener tells they exist */
}

/* Whether the route takes the request's path: the same, or under a prefix route. */
static int route_takes(const struct route *r, const struct chatd_http *req)
{
    const char *path = req->path;
    if (!route_visible(r, req->listener))
        return 0;
    if (r->flags & CHATD_HTTP_PREFIX)
        return strncmp(path, r->path, strlen(r->path)) == 0;
    return strcmp(r->path, path) == 0;
}

/* Authorization: Bearer <admin.token>, compared in time that does not
 * depend on where a wrong token first differs. */
static int admin_allowed(const struct chatd_http *req)
{
    const char *v = http_header_get(req, "Authorization");
    if (!v || strncasecmp(v, "Bearer ", 7) != 0)
        return 0;
    const char *given = v + 7, *want = rt.cfg.admin_token;
    size_t ng = strlen(given), nw = strlen(want);
    unsigned char diff = ng != nw;
    for (size_t i = 0; i < nw; i++)
        diff |= (unsigned char)(want[i] ^ (ng ? given[i % ng] : 0));
    return diff == 0;
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

int router_add(void *owner, const char *method, const char *path, int flags, chatd_http_handler fn,
               void *state)
{
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
    rt.routes[rt.n++] = (struct route){owner, m, p, flags, fn, state};
    return 0;
}

void router_remove_owner(void *owner)
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

/* Call a route's handler; answer for it if it returned without answering. */
static void run_route(struct route *r, struct chatd_http *req)
{
    uint64_t id = req->conn_id;
    int64_t before = actor_set(req->user_id); /* the jobs it submits are the user's */
    int rc = r->fn(req, r->state);
    actor_set(before);
    if (rc == CHATD_PENDING || !http_unanswered(id, req))
        return;
    if (rc == CHATD_DECLINED) {
        http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
    } else {
        log_ids_msg(CHATD_LOG_ERROR, "core", id, http_header_get(req, "X-Request-Id"),
                    "route %s %s returned without a reply", http_method_name(req->method),
                    req->path);
        http_respond_error(req, CHATD_ERR_INTERNAL, 500, "handler gave no reply");
    }
}

/* No session for the request: 401, or 503 when the session store is down. */
static void authed(struct chatd_http *req, int status)
{
    if (status == CHATD_EUNAVAIL)
        http_respond_error(req, CHATD_ERR_UNAVAILABLE, 503, "session store unavailable");
    else if (status < 0)
        http_respond_error(req, CHATD_ERR_UNAUTHORIZED, 401, "no valid session");
    else
        run_route(&rt.routes[req->route], req);
}

/* Behind a trusted balancer, the client is the last address it appended to
 * X-Forwarded-For (earlier ones are whatever the client claimed). */
static void apply_forwarded(struct chatd_http *req)
{
    const char *xff = http_header_get(req, "X-Forwarded-For");
    int trusted = 0;
    for (char *const *p = rt.cfg.trusted_proxies; xff && *p && !trusted; p++)
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

void router_handle(struct chatd_http *req)
{
    apply_forwarded(req);
    struct route *match = NULL;
    /* HEAD is answered as GET would be, without the body (http_respond drops it). */
    int method = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    char allow[128] = "";
    for (size_t i = 0; i < rt.n && !match; i++) {
        if (!route_takes(&rt.routes[i], req))
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
                              json_pack("{s:s, s:s}", "error",
                                        error_code_name(CHATD_ERR_BAD_REQUEST), "message",
                                        "method not allowed"),
                              allow);
        } else if (rt.cfg.web_root[0] && method == HTTP_GET && req->listener != CONN_LISTENER_ADMIN)
            static_serve(req, rt.cfg.web_root);
        else if (req->upgrade && req->listener == CONN_LISTENER_ADMIN)
            http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "no WebSocket on the admin listener");
        else
            http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
        return;
    }
    if (req->upgrade && !(match->flags & ROUTE_UPGRADE)) {
        http_respond_error(req, CHATD_ERR_BAD_REQUEST, 400, "no upgrade here");
        return;
    }
    if (match->flags & CHATD_HTTP_ADMIN && !admin_allowed(req)) {
        log_warn("admin request %s %s from %s refused: no valid admin token",
                 http_method_name(req->method), req->path, req->peer);
        http_respond_error(req, CHATD_ERR_UNAUTHORIZED, 401, "admin token required");
        return;
    }
    if (match->flags & CHATD_HTTP_AUTH) {
        req->route = (int)(match - rt.routes);
        rt.auth(req, authed);
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
