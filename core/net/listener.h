/* The listening sockets (server.listen, and admin.listen when set): each
 * binds, accepts, and hands every new connection on, saying which listener
 * took it. Loop thread only. */
#ifndef CHATD_LISTENER_H
#define CHATD_LISTENER_H

#include "conn.h"

struct bufferevent;
struct event_base;

/* A new connection: bev (taken), its peer address as text (borrowed), and
 * the listener that accepted it. */
typedef void (*listener_accept_fn)(struct bufferevent *bev, const char *peer,
                                   enum conn_listener which);

/* Bind and listen on "host:port" (port 0: any free one) as listener which
 * (one socket each); logs "listening on HOST:PORT", with " (admin)" for the
 * admin listener. 0, or CHATD_EINVAL with the reason logged. */
int listener_start(struct event_base *base, const char *spec, enum conn_listener which,
                   listener_accept_fn accepted);
/* Stop accepting on every listener (shutdown). Idempotent. */
void listener_stop(void);

#endif
