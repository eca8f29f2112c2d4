#include "clients.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "conn.h"
#include "dispatch.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "presence.h"
#include "session.h"
#include "ws.h"

static void emit(chatd_event_type type, const struct client *c)
{
    chatd_event ev = {
        .type = type, .user_id = c->user_id, .conn_id = c->id, .username = c->username};
    loader_emit(&ev);
}

int clients_open(struct conn *conn, struct session *s)
{
    struct client *c = calloc(1, sizeof *c);
    if (c && !(c->username = strdup(session_username(s)))) {
        free(c);
        c = NULL;
    }
    if (!c) {
        conn_abort(conn);
        return CHATD_ENOMEM;
    }
    if (ws_attach(conn, c) < 0) { /* it closed conn */
        free(c->username);
        free(c);
        return CHATD_ENOMEM;
    }
    c->id = conn->id;
    c->conn = conn;
    session_attach(c, s);
    if (presence_add(c) < 0)
        log_ids_msg(CHATD_LOG_WARN, "core", c->id, NULL, "out of memory indexing the user");
    metrics_gauge("ws_connections", presence_count());
    emit(CHATD_EVENT_CONN_OPENED, c);
    return 0;
}

static void on_text(void *user, const char *data, size_t len)
{
    dispatch_text(user, data, len);
}

/* The WebSocket closed a turn ago (or went now): its consequences, outside
 * of whatever loop closed it. */
static void on_closed(void *user)
{
    struct client *c = user;
    session_detach(c);
    presence_remove(c);
    metrics_gauge("ws_connections", presence_count());
    emit(CHATD_EVENT_CONN_CLOSED, c); /* presence no longer counts it */
    free(c->username);
    free(c);
}

const struct ws_events clients_ws_events = {
    .text = on_text,
    .closed = on_closed,
};
