/*
 * WebSocket messages in and out: parse a text frame, route it by "type" to
 * the handlers plugins registered, and build replies, errors and deliveries
 * (JSON encoded once per message, whatever the number of recipients).
 * Loop thread only.
 */
#ifndef CHATD_DISPATCH_H
#define CHATD_DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "chatd/plugin.h"

struct conn;
struct chatd_plugin;

int dispatch_init(void);
void dispatch_free(void);
/* Register fn for messages of type (copied). */
int dispatch_register(struct chatd_plugin *owner, const char *type, chatd_msg_handler fn);
/* Drop every handler of owner. */
void dispatch_remove_owner(struct chatd_plugin *owner);
/* One text message (valid UTF-8) from c. */
void dispatch_text(struct conn *c, const char *data, size_t len);

/* Host calls on requests (see chatd_host). */
int dispatch_reply(chatd_req *req, const char *type, json_t *body);
int dispatch_error(chatd_req *req, chatd_error_code code, const char *message);
void dispatch_req_done(chatd_req *req);
int64_t dispatch_req_user_id(const chatd_req *req);
const char *dispatch_req_username(const chatd_req *req);
uint64_t dispatch_req_conn_id(const chatd_req *req);
const char *dispatch_req_type(const chatd_req *req);

/* Send {"type": type, ...body} (body taken) to one WebSocket or all of a user's. */
int dispatch_send_conn(uint64_t conn_id, const char *type, json_t *body);
int dispatch_send_user(int64_t user_id, const char *type, json_t *body);
/* Send to every WebSocket entered in the channel but except_conn; body taken. */
int dispatch_send_channel(int64_t channel_id, uint64_t except_conn, const char *type,
                          json_t *body);
/* Send to the user's WebSockets, or push when there are none; body taken. */
int dispatch_notify_user(int64_t user_id, const char *username, const char *type, json_t *body);
/* Push to those of the users who have no WebSocket entered in the channel on
 * any node; body taken. */
void dispatch_push_absent(int64_t channel_id, const int64_t *user_ids,
                          const char *const *usernames, size_t n, const char *type,
                          json_t *body);
/* Hand {"type": type, ...body} to the push plugin (UNDELIVERABLE); body taken. */
void dispatch_push(int64_t user_id, const char *username, int64_t channel_id, const char *type,
                   json_t *body);

#endif
