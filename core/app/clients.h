/*
 * The life of a client (an authenticated WebSocket, session/client.h): made
 * at the upgrade with its session, indexed by presence, told to the plugins
 * (CONN_OPENED); at its close, a loop turn later, untied and told again
 * (CONN_CLOSED) and freed. Loop thread only.
 */
#ifndef CHATD_CLIENTS_H
#define CHATD_CLIENTS_H

#include <stdint.h>

struct conn;
struct session;
struct ws_events;

/* Open a client of session s on c, whose 101 was queued: 0, or
 * CHATD_ENOMEM (c is then closed). */
int clients_open(struct conn *c, struct session *s);
/* The events of the WebSocket layer: messages to dispatch, closes to tell. */
extern const struct ws_events clients_ws_events;

#endif
