/*
 * The fuzz targets' shared world: one chatd started the way core/main.c
 * starts it (configuration, log, event loop, storage, sessions, dispatch,
 * router, presence, plugins, listener), driven without sockets through
 * bufferevent pairs handed to server_adopt().
 *
 * Everything here runs on the fuzzer's thread, which is the loop thread.
 */
#ifndef CHATD_FUZZ_WORLD_H
#define CHATD_FUZZ_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

/* What world_init() prepares beyond a running server. */
enum {
    WORLD_SERVER = 0,
    WORLD_USERS = 1, /* registered users, a logged-in session, a connection and channels */
};

/* Names of what WORLD_USERS creates; the seed corpora refer to them. */
#define WORLD_USER "fuzzer"
#define WORLD_PEER "fuzzpeer"   /* an accepted connection of WORLD_USER */
#define WORLD_THIRD "fuzzthird" /* has a pending invitation to WORLD_USER */
#define WORLD_PASSWORD "fuzz-password-1"

/* Start the server once (later calls do nothing). Exits the process when
 * start-up fails: a fuzzer without its server would only report noise. */
void world_init(int what);

/* One in-memory client connection: pair[0] is the server's end, pair[1] ours. */
struct world_client {
    struct bufferevent *pair[2];
    struct evbuffer *rx; /* what the server sent, when keep_rx */
    int keep_rx;
};

/* Adopt a new connection (peer 127.0.0.1). keep_rx: keep what the server sends. */
int world_client_open(struct world_client *c, int keep_rx);
/* Send raw bytes from the client. */
void world_client_send(struct world_client *c, const void *data, size_t len);
/* Run the loop until nothing is active and no storage job is in flight
 * (bounded), moving what the server sent into c->rx (or dropping it). c may be NULL. */
void world_settle(struct world_client *c);
/* Close the client's end (the server sees EOF) and run the loop until the
 * server has freed every connection. */
void world_client_close(struct world_client *c);

/* A valid session token of WORLD_USER, logging in again (and registering
 * again) when the previous one was ended. NULL without WORLD_USERS. */
const char *world_token(void);

/* Open a WebSocket for WORLD_USER on c (handshake answered with 101).
 * 0, or -1 when the server refused it. c->rx is emptied. */
int world_ws_open(struct world_client *c, int keep_rx);

/* A client (masked) frame into out (len + 14 bytes); returns its size. */
size_t world_ws_frame(unsigned char *out, int fin, int opcode, const void *payload, size_t len,
                      const unsigned char mask[4]);

#endif
