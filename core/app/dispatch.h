/*
 * Inbound WebSocket messages: each text message of a client is parsed
 * (answering what is not a request with an ERROR the client can match),
 * held to the client's rate, and handed by its "type" to the handlers
 * registered, in order, until one answers. Then the request lives until its
 * one answer. Loop thread only.
 */
#ifndef CHATD_DISPATCH_H
#define CHATD_DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "chatd/plugin.h"

struct client;

struct dispatch_limits {
    int64_t rate;  /* messages per second a client may send (ws.rate_limit) */
    int64_t burst; /* messages at once (ws.rate_burst) */
};

/* 0 or CHATD_ENOMEM; registers the core's KEEP_ALIVE. */
/* New rates (a reload). */
void dispatch_set_limits(const struct dispatch_limits *limits);
int dispatch_init(const struct dispatch_limits *limits);
void dispatch_free(void);
/* Hand messages of type (copied) to fn with state; after those registered
 * before. 0, CHATD_EINVAL or CHATD_ENOMEM. */
int dispatch_register(void *owner, const char *type, chatd_msg_handler fn, void *state);
/* Drop every handler of owner. */
void dispatch_remove_owner(void *owner);
/* One text message (valid UTF-8, borrowed) from client c. */
void dispatch_text(struct client *c, const char *data, size_t len);

/* Host calls on requests (see chatd_host): each completes req but the getters. */
int dispatch_reply(chatd_req *req, const char *type, json_t *body);
int dispatch_error(chatd_req *req, chatd_error_code code, const char *message);
void dispatch_req_done(chatd_req *req);
int64_t dispatch_req_user_id(const chatd_req *req);
const char *dispatch_req_username(const chatd_req *req);
uint64_t dispatch_req_conn_id(const chatd_req *req);
const char *dispatch_req_type(const chatd_req *req);

/* host->request_as: msg dispatched as user_id's, the reply to answer. */
int dispatch_as(int64_t user_id, const char *username, const json_t *msg,
                void (*answer)(void *arg, const json_t *reply), void *arg);

#endif
