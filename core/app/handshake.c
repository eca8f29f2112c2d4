#include "handshake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "clients.h"
#include "conn.h"
#include "errors.h"
#include "http.h"
#include "presence.h"
#include "session.h"
#include "ws.h"

static struct {
    struct handshake_config cfg;
} hs;

/* The token req carries (cookie, Bearer, or access_token when allow_query),
 * copied into buf; NULL when none. */
static const char *handshake_token(const struct chatd_http *req, int allow_query, char *buf,
                                   size_t len)
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

/* ---- HTTP routes that need a session ---- */

struct auth_op {
    struct chatd_http *req;
    router_auth_done done;
};

static void route_authed(struct session *s, int status, void *arg)
{
    struct auth_op *op = arg;
    struct chatd_http *req = op->req;
    router_auth_done done = op->done;
    free(op);
    if (!s) {
        done(req, status < 0 ? status : CHATD_ENOTFOUND);
        return;
    }
    snprintf(req->session_key, sizeof req->session_key, "%s", session_key(s));
    req->user_id = session_user_id(s);
    done(req, 0);
}

void handshake_auth(struct chatd_http *req, router_auth_done done)
{
    char tok[128];
    struct auth_op *op = malloc(sizeof *op);
    if (!op) {
        done(req, CHATD_EUNAVAIL);
        return;
    }
    *op = (struct auth_op){req, done};
    session_lookup(handshake_token(req, 0, tok, sizeof tok), route_authed, op);
}

/* ---- the WebSocket handshake ---- */

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

/* The handshake's session is known (or not): upgrade, or say why not. */
static void ws_authed(struct session *s, int status, void *arg)
{
    struct chatd_http *req = arg;
    if (!s) {
        if (status == CHATD_EUNAVAIL)
            http_respond_error(req, CHATD_ERR_UNAVAILABLE, 503, "session store unavailable");
        else
            http_respond_error(req, CHATD_ERR_UNAUTHORIZED, 401, "no valid session");
        return;
    }
    int open = 0;
    for (struct client *c = presence_user_clients(session_user_id(s)); c; c = c->u_next)
        open += ws_is_open(c->conn);
    if (open >= hs.cfg.max_per_user) {
        http_respond_error(req, CHATD_ERR_LIMIT_EXCEEDED, 429,
                           "too many WebSockets for this user (ws.max_connections_per_user)");
        return;
    }
    char accept[29], headers[160];
    ws_accept_key(http_header_get(req, "Sec-WebSocket-Key"), accept);
    snprintf(headers, sizeof headers,
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", accept);
    struct conn *c = http_switch_protocols(req, headers);
    if (c)
        clients_open(c, s);
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
    if (origin && hs.cfg.allowed_origins[0]) {
        int ok = 0;
        for (char *const *o = hs.cfg.allowed_origins; *o && !ok; o++)
            ok = strcmp(*o, origin) == 0;
        if (!ok) {
            http_respond_error(req, CHATD_ERR_FORBIDDEN, 403, "origin not allowed");
            return CHATD_OK;
        }
    }
    char tok[128];
    session_lookup(handshake_token(req, 1, tok, sizeof tok), ws_authed, req);
    return CHATD_PENDING;
}

void handshake_configure(const struct handshake_config *cfg)
{
    hs.cfg = *cfg;
}

int handshake_init(const struct handshake_config *cfg, const char *path)
{
    hs.cfg = *cfg;
    return router_add(NULL, "GET", path, ROUTE_UPGRADE, route_ws, NULL);
}
