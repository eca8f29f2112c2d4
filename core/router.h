/* HTTP routes: the core's own (/healthz, /metrics, the WebSocket upgrade,
 * static files) and those plugins register. Loop thread only. */
#ifndef CHATD_ROUTER_H
#define CHATD_ROUTER_H

#include "chatd/plugin.h"

struct conn;
struct chatd_http;
struct settings;
struct chatd_plugin;

int router_init(const struct settings *s);
const struct settings *router_settings(void);
/* Add a route (method and path copied). CHATD_ECONFLICT if taken. */
int router_add(struct chatd_plugin *owner, const char *method, const char *path, int flags,
               chatd_http_handler fn, void *state);
/* Remove every route of owner. */
void router_remove_owner(struct chatd_plugin *owner);
/* Answer req (now c->pending). */
void router_handle(struct conn *c, struct chatd_http *req);
/* The session token the request carries (cookie, Bearer, or access_token
 * when allow_query), copied into buf; NULL when none. */
const char *router_token(const struct chatd_http *req, int allow_query, char *buf, size_t len);
void router_free(void);

#endif
