/*
 * HTTP routes: exact method and path to a handler, with HEAD answered as GET,
 * 405 (with Allow) for a known path asked with another method, static files
 * under the web root for the rest of GET, and authentication of the routes
 * that need it by the hook given at init. With a separate admin listener the
 * admin routes are there only, and nothing else is but ROUTE_ADMIN_LISTENER
 * ones. Loop thread only.
 */
#ifndef CHATD_ROUTER_H
#define CHATD_ROUTER_H

#include "chatd/plugin.h"

struct chatd_http;

/* router_add flags beyond chatd_http's: this route takes WebSocket upgrades; */
#define ROUTE_UPGRADE 0x100
/* it is served on the admin listener too (/healthz). */
#define ROUTE_ADMIN_LISTENER 0x200

/* The authentication hook's answer for req: status 0 with req->user_id and
 * req->session_key set, or why not (CHATD_EUNAVAIL: the session store could
 * not be asked; anything else: no valid session). */
typedef void (*router_auth_done)(struct chatd_http *req, int status);
/* Find the session of req (its token); call done exactly once, now or later. */
typedef void (*router_auth_fn)(struct chatd_http *req, router_auth_done done);

struct router_config {
    const char *web_root;         /* "" for none (borrowed for the router's life) */
    char *const *trusted_proxies; /* NULL-terminated: peers whose X-Forwarded-For is believed */
    const char *admin_token;      /* CHATD_HTTP_ADMIN routes' bearer token; "": they are off */
    int admin_listener;           /* admin.listen is set: they are served there, and only there */
};

/* 0, or CHATD_ENOMEM. */
int router_init(const struct router_config *cfg, router_auth_fn auth);
void router_free(void);
/* Add a route (method and path copied); fn gets state. CHATD_ECONFLICT if
 * taken, CHATD_EINVAL for an unknown method or a path not starting with '/'. */
int router_add(void *owner, const char *method, const char *path, int flags, chatd_http_handler fn,
               void *state);
/* Remove every route of owner (not NULL). */
void router_remove_owner(void *owner);
/* Take new settings (a reload): web root, trusted proxies, admin token. */
void router_configure(const struct router_config *cfg);
/* Answer req: the http layer's request callback. */
void router_handle(struct chatd_http *req);

#endif
