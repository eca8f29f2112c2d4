/* The listener and the connection lifecycle. Loop thread only. */
#ifndef CHATD_SERVER_H
#define CHATD_SERVER_H

#include <event2/event.h>

struct settings;

/* Bind and listen on s->listen; logs "listening on HOST:PORT". */
int server_start(struct event_base *base, const struct settings *s);
struct bufferevent;
/* Take a connection in (accept calls it; tests and fuzzers hand in a
 * bufferevent pair). Takes bev, freeing it when refused. peer copied. */
int server_adopt(struct bufferevent *bev, const char *peer);
/* Stop accepting and close every connection (WebSockets with 1001). */
void server_drain(void);
/* Whether SIGTERM started draining (no more keep-alive). */
int server_draining(void);
/* Connections still open. */
long server_connection_count(void);
/* Free everything left; after the loop stopped. */
void server_free(void);

#endif
