/* The listening socket: binds, accepts, and hands each new connection on.
 * Loop thread only. */
#ifndef CHATD_LISTENER_H
#define CHATD_LISTENER_H

struct bufferevent;
struct event_base;

/* A new connection: bev (taken) and its peer address as text (borrowed). */
typedef void (*listener_accept_fn)(struct bufferevent *bev, const char *peer);

/* Bind and listen on "host:port" (port 0: any free one); logs "listening on
 * HOST:PORT". 0, or CHATD_EINVAL with the reason logged. */
int listener_start(struct event_base *base, const char *spec, listener_accept_fn accepted);
/* Stop accepting (shutdown). Idempotent. */
void listener_stop(void);

#endif
