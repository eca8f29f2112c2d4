/*
 * Outbound messages: to one WebSocket, to a user's, to those entered in a
 * channel (here and, through the bus, on the other nodes), with push for
 * those a notification cannot reach. Each message is encoded once, whatever
 * the number of recipients; a client whose session's TTL ran out gets
 * nothing. Loop thread only.
 */
#ifndef CHATD_DELIVER_H
#define CHATD_DELIVER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct bus_events;

/* Send {"type": type, ...body} (body taken) to one WebSocket: 0, or
 * CHATD_ENOTFOUND when it is gone. */
int deliver_conn(uint64_t conn_id, const char *type, json_t *body);
/* To every WebSocket of the user (on every node); returns how many here got it. */
int deliver_user(int64_t user_id, const char *type, json_t *body);
/* To every WebSocket entered in the channel but except_conn (0: none), on
 * every node; returns how many here got it. */
int deliver_channel(int64_t channel_id, uint64_t except_conn, const char *type, json_t *body);
/* To the user's WebSockets, or to push when no node holds one. username
 * borrowed; returns how many here got it. */
int deliver_notify_user(int64_t user_id, const char *username, const char *type, json_t *body);
/* The same for the push intent ref (0: none): pushes carry it, and
 * CHATD_EVENT_PUSH_SETTLED follows once it is decided. */
int deliver_notify_user_ref(int64_t ref, int64_t user_id, const char *username, const char *type,
                            json_t *body);
/* To every WebSocket entered in the channel and every WebSocket of the user,
 * each once, on every node, but except_conn; returns how many here got it. */
int deliver_channel_and_user(int64_t channel_id, int64_t user_id, uint64_t except_conn,
                             const char *type, json_t *body);
/* Hand a notification straight to push (UNDELIVERABLE). */
void deliver_push(int64_t user_id, const char *username, int64_t channel_id, const char *type,
                  json_t *body);
/* Push to those of the users (arrays of n, borrowed) with no WebSocket
 * entered in the channel on any node; body taken. */
void deliver_push_absent(int64_t channel_id, const int64_t *user_ids, const char *const *usernames,
                         size_t n, const char *type, json_t *body);
void deliver_push_absent_ref(int64_t ref, int64_t channel_id, const int64_t *user_ids,
                             const char *const *usernames, size_t n, const char *type,
                             json_t *body);

/* What the bus hands to this node's WebSockets (see bus.h). */
extern const struct bus_events deliver_bus_events;

#endif
