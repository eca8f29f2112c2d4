/*
 * Login sessions: random 256-bit tokens, kept as their SHA-256 in memory and
 * in the store, with the WebSockets opened under each. Loop thread only.
 */
#ifndef CHATD_SESSION_H
#define CHATD_SESSION_H

#include <stddef.h>
#include <stdint.h>

struct client;
struct event_base;
struct chatd_db;
struct settings;
struct store_backend;
struct session;

#define SESSION_TOKEN_LEN 43     /* base64url of 32 bytes, no padding */
#define SESSION_CLOSE_ENDED 4001 /* the close code of a WebSocket whose session ended */

/* Load the live sessions of the SQL store, or subscribe to the other nodes'
 * session events when session.backend is "redis"; start the sweep. Start-up.
 * 0, or a negative code (logged). */
int session_init(struct event_base *base, const struct settings *s, struct store_backend *b);
void session_free_all(void);

/* Find the live session of a token (borrowed; NULL or malformed: none):
 * cb(session or NULL, status, arg), where status is CHATD_EUNAVAIL when the
 * shared store could not be asked. cb runs exactly once, before
 * session_lookup returns (the session is known here) or later. Returns 0. */
typedef void (*session_lookup_fn)(struct session *s, int status, void *arg);
int session_lookup(const char *token, session_lookup_fn cb, void *arg);
/* The session's key (hash of its token, hex; borrowed) and the live session of a key. */
const char *session_key(const struct session *s);
struct session *session_find_key(const char *key);
/* New session for a user: writes the token into out (>= 64 bytes); done(arg, status)
 * runs on the loop once it is stored. 0, or a negative code (done not called). */
int session_create(int64_t user_id, const char *username, char *out,
                   void (*done)(void *arg, int status), void *arg);
/* End a session: its WebSockets close with 4001, the token stops working now. */
void session_end(struct session *s);
/* End every session of a user. */
void session_end_user(int64_t user_id);
/* The same, with done(arg) once no node accepts the token any more (every
 * node confirmed, or session.end_confirm_ms passed); maybe at once. */
void session_end_then(struct session *s, void (*done)(void *arg), void *arg);
void session_end_user_then(int64_t user_id, void (*done)(void *arg), void *arg);
/* KEEP_ALIVE: push the expiry a whole TTL ahead. */
void session_touch(struct session *s);
/* Whether the session's TTL ran out. */
int session_expired(const struct session *s);
/* Whether s (may be NULL) is live at wall-clock second now: cheap, for a
 * check per recipient of a delivery. */
int session_live_at(const struct session *s, int64_t now);
int64_t session_user_id(const struct session *s);
const char *session_username(const struct session *s);
int64_t session_ttl(void);
size_t session_count(void);

/* Tie a client to its session (and its user id); the session's end closes it. */
void session_attach(struct client *c, struct session *s);
/* Untie it (idempotent). */
void session_detach(struct client *c);

/* Inside a user-removal transaction: delete the user's sessions when they
 * are kept in this same database. 0 or a negative CHATD_E*. Worker thread. */
int session_remove_user_rows(struct chatd_db *db, int64_t user_id);

#endif
