/*
 * Where login sessions persist: the SQL store (one node: every live session
 * is loaded at start, so a token not in memory is unknown) or Redis (many
 * nodes: a token not in memory may be another node's, so it is looked up,
 * and ends and refreshes are broadcast). Internal to the session module.
 */
#ifndef CHATD_SESSION_STORE_H
#define CHATD_SESSION_STORE_H

#include <event2/event.h>
#include <stdint.h>

#include "chatd/plugin.h"

struct store_backend;
struct settings;

/* status 0 with user_id 0: no such session; CHATD_EUNAVAIL: the store is down. */
typedef void (*session_found_fn)(void *arg, int status, int64_t user_id, const char *username,
                                 int64_t expires_s);

struct session_store {
    const char *name;
    /* Persist a new session; done(arg, status) on the loop once stored. */
    int (*create)(const char *key, int64_t user_id, const char *username, int64_t expires_s,
                  void (*done)(void *arg, int status), void *arg);
    /* Write a later expiry. */
    void (*touch)(const char *key, int64_t expires_s);
    /* Remove one session, or every session of a user; other nodes are told.
     * done(arg) (may be NULL) once every node has forgotten it (or after
     * session.end_confirm_ms), maybe at once. */
    void (*end)(const char *key, int64_t user_id, void (*done)(void *arg), void *arg);
    void (*end_user)(int64_t user_id, void (*done)(void *arg), void *arg);
    /* Look up a session this node does not hold; found(arg, 0, NULL, 0) when
     * unknown. NULL when this node holds every live session. */
    int (*lookup)(const char *key, session_found_fn found, void *arg);
    /* Drop expired sessions from the store (periodic). */
    void (*purge)(int64_t now_s);
};

extern const struct session_store session_sql;
extern const struct session_store session_redis;

/* What the other nodes do to sessions, told by the Redis store (its own
 * echoes included). Borrowed strings. */
struct session_store_events {
    void (*end)(const char *key);
    void (*end_user)(int64_t user_id);
    void (*touch)(const char *key, int64_t expires_s);
};

/* SQL: remember the backend and load every live session through add(). */
int session_sql_init(struct store_backend *b, void (*add)(const char *key, int64_t user_id,
                                                          const char *username, int64_t expires_s));
/* SQL: delete a user's sessions inside the caller's transaction. */
int session_sql_remove_user(chatd_db *db, int64_t user_id);
/* Redis: subscribe to the other nodes' session events (ev copied). */
int session_redis_init(struct event_base *base, const struct settings *s,
                       const struct session_store_events *ev);
/* Redis: drop the ends still waiting for acks (shutdown). */
void session_redis_free(void);
/* Redis: send again the ends that could not be sent while it was down. */
void session_redis_resend(void);

#endif
