/*
 * chatd plugin ABI. This header is the whole contract between the chatd core
 * and a plugin; a plugin includes nothing else of chatd and never links
 * against the executable.
 *
 * Versioning: CHATD_ABI_MAJOR changes only when an existing field or call
 * changes meaning; the core refuses a plugin of another major. Minors only
 * append fields at the end of chatd_plugin_desc and chatd_host. Both
 * structures start with their own size: the core reads no further than the
 * plugin's struct_size (missing fields count as NULL), and a plugin checks
 * host->struct_size (CHATD_HOST_HAS) before calling a newer host function.
 *
 * Threads: every host call is made from the loop thread (the thread that
 * calls init, handlers and job done() callbacks), except three that any
 * thread may call (post(), random_bytes() and now_ms()), the db_* calls,
 * which are made from a job's worker thread inside run(), and the map_*
 * calls, made by one thread at a time per map. Ownership is stated per
 * call: "borrowed" means valid until the call or callback returns; "takes"
 * means the callee owns it afterwards, even when the call fails.
 */
#ifndef CHATD_PLUGIN_H
#define CHATD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CHATD_ABI_MAJOR 1
#define CHATD_ABI_MINOR 4

/* Return codes. 0 is success; errors are negative. */
#define CHATD_OK 0
#define CHATD_DECLINED 1      /* handler: not mine, try the next handler */
#define CHATD_PENDING 2       /* handler: I will answer later, exactly once */
#define CHATD_ROW 3           /* db_step: a row is ready */
#define CHATD_DONE 4          /* db_step: no more rows */
#define CHATD_EINVAL (-1)     /* bad argument or malformed input */
#define CHATD_ENOMEM (-2)     /* out of memory */
#define CHATD_ENOTFOUND (-3)  /* no such row / user / channel */
#define CHATD_ECONFLICT (-4)  /* unique constraint or state conflict */
#define CHATD_EFORBIDDEN (-5) /* not allowed for this user */
#define CHATD_ELIMIT (-6)     /* a configured limit was reached */
#define CHATD_EUNAVAIL (-7)   /* backend down: nothing was written */
#define CHATD_EBUSY (-8)      /* transient lock conflict: the core retries */
#define CHATD_EINTERNAL (-9)  /* anything else: a bug */

/* Wire error codes of PROTOCOL.md section 4, for host->error(). */
typedef enum {
    CHATD_ERR_BAD_REQUEST = 1,
    CHATD_ERR_UNAUTHORIZED,
    CHATD_ERR_FORBIDDEN,
    CHATD_ERR_NOT_FOUND,
    CHATD_ERR_CONFLICT,
    CHATD_ERR_LIMIT_EXCEEDED,
    CHATD_ERR_RATE_LIMITED,
    CHATD_ERR_UNAVAILABLE,
    CHATD_ERR_INTERNAL,
} chatd_error_code;

typedef enum {
    CHATD_LOG_ERROR = 0,
    CHATD_LOG_WARN,
    CHATD_LOG_INFO,
    CHATD_LOG_DEBUG,
} chatd_log_level;

/* Opaque handles. All are owned by the core. */
typedef struct chatd_plugin chatd_plugin; /* this plugin, as the core knows it */
typedef struct chatd_req chatd_req;       /* one WebSocket request */
typedef struct chatd_http chatd_http;     /* one HTTP request */
typedef struct chatd_db chatd_db;         /* a worker's database connection */
typedef struct chatd_stmt chatd_stmt;     /* a prepared statement of that connection */
typedef struct chatd_map chatd_map;       /* a hash map of the plugin's (ABI 1.1) */

/* Events a plugin may subscribe to with host->on_event(). */
typedef enum {
    CHATD_EVENT_CONN_OPENED = 1, /* a WebSocket was authenticated and opened */
    CHATD_EVENT_CONN_CLOSED,     /* a WebSocket closed (any reason) */
    CHATD_EVENT_USER_REGISTERED, /* a user was created */
    CHATD_EVENT_USER_REMOVED,    /* a user was removed (unregister) */
    CHATD_EVENT_UNDELIVERABLE,   /* a notification found no WebSocket to show it: push it */
    CHATD_EVENT_CHANNEL_CHANGED, /* a channel's members changed (channel_id) */
    /* ABI 1.1, once host->watch_presence() asked for them: a user came online
     * (a first WebSocket on any node), or went offline (none on any node for
     * the grace asked); each told once, on one node. */
    CHATD_EVENT_USER_ONLINE,
    CHATD_EVENT_USER_OFFLINE, /* time_ms: when the user's last WebSocket went */
    /* ABI 1.1: a session was ended by logout (session_key: which); told on
     * the node that ended it. */
    CHATD_EVENT_SESSION_ENDED,
    /* ABI 1.1: every UNDELIVERABLE of the push intent push_ref has been told
     * (there may have been none): the intent is settled. */
    CHATD_EVENT_PUSH_SETTLED,
    /* ABI 1.1: a message, an edit, a deletion or a reaction was committed:
     * told once, after the commit, on the node that wrote it, in the order of
     * the channel's versions. channel_id, user_id and username (who did it),
     * and body {"kind": "message"|"edit"|"delete"|"reaction", "channelId",
     * "messageSequence", "version", "username", "content" (message, edit),
     * "replyTo" (message), "emoji" and "on" (reaction)}. */
    CHATD_EVENT_MESSAGE_STORED,
    /* ABI 1.1: SIGHUP: the operator asks for files to be read again (a
     * plugin's word list, say). Its config entry stays as it was. */
    CHATD_EVENT_RELOAD,
} chatd_event_type;

typedef struct {
    chatd_event_type type;
    int64_t user_id;      /* the user concerned (0 for CHANNEL_CHANGED) */
    uint64_t conn_id;     /* CONN_*: the WebSocket; else 0 */
    const char *username; /* borrowed; may be NULL */
    int64_t channel_id;   /* CHANNEL_CHANGED, and UNDELIVERABLE of a channel message */
    const json_t *body;   /* UNDELIVERABLE: the whole notification, "type" included; borrowed */
    int64_t time_ms;      /* USER_OFFLINE: ms since the epoch (ABI 1.1) */
    /* ABI 1.1 */
    const char *session_key; /* SESSION_ENDED: the session's key (hex); borrowed */
    int64_t push_ref;        /* UNDELIVERABLE, PUSH_SETTLED: the push intent, or 0 */
} chatd_event;

/*
 * WebSocket message handler, called on the loop thread for every message
 * whose "type" it registered. msg is borrowed (the whole JSON object, "type"
 * included). Returns CHATD_OK when it has answered (or the message needs no
 * answer), CHATD_DECLINED to pass the message on, or CHATD_PENDING when it
 * keeps req and completes it later with exactly one of host->reply(),
 * host->error() or host->req_done().
 */
typedef int (*chatd_msg_handler)(chatd_req *req, const json_t *msg, void *state);

/*
 * HTTP route handler, called on the loop thread. Same return contract as
 * chatd_msg_handler; a CHATD_PENDING request is completed with exactly one
 * host->http_reply() or host->http_error(), which is safe even when the
 * client has gone meanwhile.
 */
typedef int (*chatd_http_handler)(chatd_http *req, void *state);

typedef void (*chatd_event_handler)(const chatd_event *ev, void *state);

/* ABI 1.1: a message a filter sees (all borrowed for the filter's call). */
typedef struct {
    const char *type; /* "WRITE_MESSAGE" or "EDIT_MESSAGE" */
    int64_t channel_id;
    int64_t user_id; /* the author */
    const char *username;
    int64_t sequence; /* EDIT_MESSAGE: the message edited; WRITE_MESSAGE: 0 */
    const char *content;
} chatd_message_view;

/* One filter's turn on one message. */
typedef struct chatd_filter chatd_filter;

/*
 * A message filter, called on the loop thread. It gives exactly one verdict
 * with host->filter_pass(), filter_reject() or filter_replace(): before it
 * returns (returning CHATD_OK), or later (returning CHATD_PENDING), when it
 * needs I/O; past hooks.filter_timeout_ms the write fails UNAVAILABLE, and a
 * late verdict is still owed (it frees f) but changes nothing.
 */
typedef int (*chatd_message_filter)(chatd_filter *f, const chatd_message_view *m, void *state);

/*
 * Storage job. run() executes on a worker thread with a connection of the
 * plugin's backend, inside a transaction the core opens and commits; it may
 * block and call host->db_*(). It returns 0 to commit or a negative CHATD_E*
 * to roll its work back. run() may be called again for the same arg when the
 * core retries a transient conflict: it must (re)set its results each time.
 * done() then runs on the loop thread with run's status (or CHATD_EUNAVAIL
 * when the backend could not be reached); done() owns arg again.
 */
typedef int (*chatd_job_run)(chatd_db *db, void *arg);
typedef void (*chatd_job_done)(void *arg, int status);

/*
 * ABI 1.2: run() for n write jobs at once (args in the batch's order), in
 * one transaction, so that one statement may do the work of many (see
 * host->job_batch). It sets status[i] for each job as run() would return it;
 * a job given a negative status must have written nothing. It returns 0, or
 * a negative CHATD_E* for all n: CHATD_EBUSY is retried as run()'s is; after
 * any other the core takes the transaction back and runs each job with
 * run() alone.
 */
typedef int (*chatd_job_run_batch)(chatd_db *db, void *const *args, int *status, size_t n);

/* ABI 1.2: one event of host->push_intents(), as push_intent()'s arguments. */
typedef struct chatd_intent {
    int64_t channel_id, user_id, except_user;
    const char *type;
    const json_t *body;
} chatd_intent;

/* host->submit() flags */
#define CHATD_JOB_WRITE 0x0 /* may write: serialised and group-committed */
#define CHATD_JOB_READ 0x1  /* reads only: may run in parallel with others */
#define CHATD_JOB_CPU 0x2   /* no database at all (e.g. password hashing); db is NULL */
/* With CHATD_JOB_READ: a read that must see every commit made so far, by
 * anyone on any node (a check that races other users' writes, such as a
 * ban): it runs on the primary, never on a read replica (mariadb.replicas).
 * Other reads may run on a replica, and see the writes of the user the job
 * is for (see PLUGINS.md, "Reads and replicas"). Cores without replicas
 * ignore the flag. */
#define CHATD_JOB_PRIMARY 0x4
/* ABI 1.2, with CHATD_JOB_WRITE: a job that keeps no order with any other
 * (its plugin runs one at a time, say): the core may run it anywhere in its
 * batch. Other jobs submitted without a key keep their place in the batch,
 * and the keyed jobs are ordered by key only between two of them. */
#define CHATD_JOB_UNORDERED 0x8

/*
 * A user-removal hook: runs on a worker thread inside the transaction that
 * removes the user, so a plugin's rows about the user go with it atomically.
 * state is the plugin's state (read it only). Returns 0 or a negative CHATD_E*
 * (which rolls the removal back).
 */
typedef int (*chatd_user_hook)(chatd_db *db, int64_t user_id, void *state);

/* Flags of host->http_route(). */
#define CHATD_HTTP_AUTH 0x1 /* the core rejects the request with 401 unless a valid session */
/* ABI 1.1: an operator's route: the core answers 401 unless the request
 * carries Authorization: Bearer <admin.token>, and 404 while admin.token is
 * unset (the route is not there); with admin.listen set, it is there only on
 * that listener. */
#define CHATD_HTTP_ADMIN 0x2
/* ABI 1.1: the path (ending in '/') is a prefix: the route takes every path
 * under it; http_path() says which. */
#define CHATD_HTTP_PREFIX 0x4

/*
 * The host table: the core's services, valid from init() until cleanup()
 * returns. Fields are only ever appended.
 */
typedef struct chatd_host {
    size_t struct_size;
    int abi_major;
    int abi_minor;

    /* ---- logging and metrics ---- */

    /* Log one line as this plugin. Never pass a token or password. */
    void (*log)(chatd_plugin *p, chatd_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* Add delta to the counter chatd_<name>_total (created on first use; name borrowed). */
    void (*count)(chatd_plugin *p, const char *name, uint64_t delta);

    /* ---- registration (init() or later; removed automatically at unload) ---- */

    /* Handle WebSocket messages of this "type" (borrowed, copied). */
    int (*on_message)(chatd_plugin *p, const char *type, chatd_msg_handler fn);
    /* Handle HTTP requests for an exact method and path (both copied). */
    int (*http_route)(chatd_plugin *p, const char *method, const char *path, int flags,
                      chatd_http_handler fn);
    /* Be told of events of one type (one handler per type and plugin). */
    int (*on_event)(chatd_plugin *p, chatd_event_type type, chatd_event_handler fn);
    /* Tell every subscribed plugin of an event (ev borrowed), e.g. USER_REMOVED
     * from the plugin that removed the user. */
    void (*emit)(chatd_plugin *p, const chatd_event *ev);

    /* ---- WebSocket requests (req is borrowed; valid until completed) ---- */

    int64_t (*req_user_id)(const chatd_req *req);
    /* Username of the session's user; borrowed, valid while req is. */
    const char *(*req_username)(const chatd_req *req);
    uint64_t (*req_conn_id)(const chatd_req *req);
    /* The request's "type" (borrowed). */
    const char *(*req_type)(const chatd_req *req);
    /* Answer with {"type": type, ...body, "requestId"?}. Takes body (may be NULL). Completes req.
     */
    int (*reply)(chatd_req *req, const char *type, json_t *body);
    /* Answer with an ERROR frame (message borrowed). Completes req. */
    int (*error)(chatd_req *req, chatd_error_code code, const char *message);
    /* Complete a pending req that needs no answer. */
    void (*req_done)(chatd_req *req);

    /* ---- sending (type borrowed; body taken; encoded once for all recipients) ---- */

    /* Send to one WebSocket; CHATD_ENOTFOUND when it is gone. */
    int (*send_conn)(uint64_t conn_id, const char *type, json_t *body);
    /* Send to every WebSocket of the user on this node; returns how many got it. */
    int (*send_user)(int64_t user_id, const char *type, json_t *body);

    /* ---- sessions ---- */

    /* Create a login session for user: writes the new token (NUL-terminated) into
     * token_out (at least 64 bytes). Asynchronous: done(arg, status) on the loop. */
    int (*session_create)(int64_t user_id, const char *username, char *token_out,
                          void (*done)(void *arg, int status), void *arg);
    /* End the session behind the token of this HTTP request, or every session of
     * a user (user_id > 0); closes the WebSockets with 4001. */
    int (*session_end_http)(chatd_http *req);
    int (*session_end_user)(int64_t user_id);
    /* Seconds a session lives without KEEP_ALIVE. */
    int64_t (*session_ttl)(void);

    /* ---- HTTP requests (req borrowed until completed) ---- */

    /* Body bytes (borrowed, NUL-terminated) and its length. */
    const char *(*http_body)(const chatd_http *req, size_t *len);
    /* Value of a request header (case-insensitive name) or NULL; borrowed. */
    const char *(*http_header)(const chatd_http *req, const char *name);
    /* Client address as text (borrowed), e.g. "127.0.0.1". */
    const char *(*http_peer)(const chatd_http *req);
    /* Authenticated user of a CHATD_HTTP_AUTH route, else 0. */
    int64_t (*http_user_id)(const chatd_http *req);
    /* Reply; body taken (may be NULL for no body); extra_headers borrowed, a
     * block of "Name: value\r\n" lines or NULL. Completes req. */
    int (*http_reply)(chatd_http *req, int status, json_t *body, const char *extra_headers);
    /* Reply {"error": CODE, "message": message} with the status matching code. */
    int (*http_error)(chatd_http *req, chatd_error_code code, const char *message);

    /* ---- storage jobs ---- */

    /* Queue a job on this plugin's backend (see chatd_job_run). arg is owned by the
     * caller throughout; run gets it on a worker, done gets it back on the loop. */
    int (*submit)(chatd_plugin *p, int flags, chatd_job_run run, chatd_job_done done, void *arg);

    /* ---- database calls: worker thread, inside run() only ---- */

    /* Prepare (cached per connection by the sql pointer's text). Portable SQL with
     * '?' placeholders. The statement is reset and unbound when returned. */
    chatd_stmt *(*db_prepare)(chatd_db *db, const char *sql);
    int (*db_bind_int)(chatd_stmt *st, int idx, int64_t v);                  /* idx from 1 */
    int (*db_bind_text)(chatd_stmt *st, int idx, const char *s, size_t len); /* copied */
    int (*db_bind_blob)(chatd_stmt *st, int idx, const void *b, size_t len); /* copied */
    int (*db_bind_null)(chatd_stmt *st, int idx);
    /* CHATD_ROW, CHATD_DONE, or a negative CHATD_E* (ECONFLICT on a unique key). */
    int (*db_step)(chatd_stmt *st);
    int64_t (*db_column_int)(chatd_stmt *st, int col); /* col from 0 */
    /* Text of a column, borrowed until the next step/reset; len may be NULL. */
    const char *(*db_column_text)(chatd_stmt *st, int col, size_t *len);
    int (*db_column_is_null)(chatd_stmt *st, int col);
    /* Reset a statement for re-use (also done by db_prepare). */
    void (*db_reset)(chatd_stmt *st);
    int64_t (*db_last_insert_id)(chatd_db *db);
    /* Rows changed by the last statement. */
    int64_t (*db_changes)(chatd_db *db);
    /* Name of the backend's SQL dialect: "sqlite" or "mariadb". */
    const char *(*db_dialect)(chatd_db *db);
    /* Run every plugin's user-removal hook inside this job's transaction
     * (called by the plugin that removes a user, from its run()). */
    int (*db_user_removing)(chatd_db *db, int64_t user_id);

    /* ---- any thread ---- */

    /* Run fn(arg) on the loop thread soon. Any thread (see "Threads" above). */
    int (*post)(void (*fn)(void *arg), void *arg);

    /* ---- misc ---- */

    /* Fill buf with len cryptographically random bytes (any thread). */
    int (*random_bytes)(void *buf, size_t len);
    /* Current time in milliseconds since the epoch (any thread). */
    int64_t (*now_ms)(void);

    /* ---- presence: the one active channel of each WebSocket (this node) ---- */

    /* Make channel_id the WebSocket's active channel (0 clears it). */
    int (*conn_enter)(uint64_t conn_id, int64_t channel_id);
    /* The WebSocket's active channel, or 0. */
    int64_t (*conn_channel)(uint64_t conn_id);
    /* Whether any WebSocket of the user is entered in the channel. */
    int (*user_in_channel)(int64_t user_id, int64_t channel_id);
    /* Whether the user has any WebSocket open. */
    int (*user_online)(int64_t user_id);
    /* Clear the active channel of every WebSocket of the user entered in it, on every node. */
    void (*user_leave_channel)(int64_t user_id, int64_t channel_id);
    /* Send to every WebSocket entered in the channel but except_conn (0: none);
     * body taken, encoded once. Returns how many got it. */
    int (*send_channel)(int64_t channel_id, uint64_t except_conn, const char *type, json_t *body);

    /* ---- notifications ---- */

    /* Send to every WebSocket of the user; with none, hand it to push
     * (UNDELIVERABLE). username borrowed, body taken. Returns WebSockets reached. */
    int (*notify_user)(int64_t user_id, const char *username, const char *type, json_t *body);
    /* Hand a notification straight to push (for a user who would not see it);
     * channel_id may be 0. username borrowed, body taken. */
    void (*push)(int64_t user_id, const char *username, int64_t channel_id, const char *type,
                 json_t *body);

    /* ---- more registration ---- */

    /* Run fn inside every user-removal transaction (see chatd_user_hook). init() only. */
    int (*on_user_removing)(chatd_plugin *p, chatd_user_hook fn);

    /* ---- environment ---- */

    /* server.data_dir (borrowed). */
    const char *(*data_dir)(void);
    /* The plugin's SQL storage backend ("sqlite", "mariadb"), or NULL when its
     * `backend` setting names none (then the setting is the plugin's own to read). */
    const char *(*backend_name)(chatd_plugin *p);

    /* Push a channel's notification to those of the users (arrays of n,
     * borrowed) with no WebSocket entered in the channel on any node; on many
     * nodes the answer comes from Redis, so the pushes may follow later.
     * body taken. */
    void (*push_absent)(int64_t channel_id, const int64_t *user_ids, const char *const *usernames,
                        size_t n, const char *type, json_t *body);

    /* Send one command to the nodes' shared Redis (argv[i] of argvlen[i]
     * bytes, copied); done(arg, status) on the loop when it answered (0) or
     * failed (CHATD_EUNAVAIL). done may be NULL. 0, or with done not called
     * CHATD_EUNAVAIL at once when no redis.host is set, CHATD_ENOMEM. */
    int (*redis_command)(int argc, const char *const *argv, const size_t *argvlen,
                         void (*done)(void *arg, int status), void *arg);

    /* A counter shared by every node (in Redis) that lives window_s seconds
     * from its first increment: add > 0 increments, 0 reads, < 0 deletes.
     * done(arg, status, count) on the loop. CHATD_EUNAVAIL at once, with done
     * not called, when the nodes share no Redis: the plugin counts alone. */
    int (*shared_count)(const char *key, int64_t add, int64_t window_s,
                        void (*done)(void *arg, int status, int64_t count), void *arg);

    /* ---- ABI 1.1: hash maps for the plugin's own state ---- */

    /*
     * The core's hash map, for one thread at a time (the loop, say). Keys are
     * integer ids (string_keys 0: pass key NULL) or NUL-terminated strings
     * (string_keys 1: id ignored; the map copies the key). Values are the
     * plugin's, never freed by the map. NULL when out of memory.
     */
    chatd_map *(*map_new)(int string_keys);
    /* Free the map (not its values); NULL is fine. */
    void (*map_free)(chatd_map *m);
    size_t (*map_count)(const chatd_map *m);
    /* Insert, or replace the value of a key present. 0 or CHATD_ENOMEM. */
    int (*map_put)(chatd_map *m, int64_t id, const char *key, void *value);
    /* The value of a key, or NULL. */
    void *(*map_get)(const chatd_map *m, int64_t id, const char *key);
    /* Remove a key: its value, or NULL when absent. */
    void *(*map_del)(chatd_map *m, int64_t id, const char *key);
    /* Remove every entry for which drop(id, key, value, arg) returns nonzero
     * (drop frees the value if it must, and changes the map in no other way);
     * each entry is seen once, the order is the map's. Returns how many went. */
    size_t (*map_sweep)(chatd_map *m,
                        int (*drop)(int64_t id, const char *key, void *value, void *arg),
                        void *arg);

    /* ---- ABI 1.1: timers and deliveries of the conversations ---- */

    /* Run fn(arg) on the loop thread once, delay_ms from now (0: next turn).
     * A timer still pending when the plugin unloads is dropped, fn not
     * called; arg is the plugin's. 0 or CHATD_ENOMEM. */
    int (*after)(chatd_plugin *p, int64_t delay_ms, void (*fn)(void *arg), void *arg);
    /* Send to every WebSocket entered in the channel and every WebSocket of
     * the user (each once, on every node), but except_conn (0: none); body
     * taken, encoded once. Returns how many here got it. */
    int (*send_channel_and_user)(int64_t channel_id, int64_t user_id, uint64_t except_conn,
                                 const char *type, json_t *body);
    /* Tell this plugin CHATD_EVENT_USER_ONLINE and USER_OFFLINE, a user being
     * offline only once no node held a WebSocket of theirs for grace_ms (so a
     * reconnect does not flap). init() only. 0 or CHATD_EINVAL. */
    int (*watch_presence)(chatd_plugin *p, int64_t grace_ms);
    /* Which of the users (ids[0..n), borrowed) are online as those events
     * tell it: done(arg, online) on the loop with online[i] 1 or 0 (borrowed
     * for the call; NULL when it could not be said). 0, or CHATD_ENOMEM with
     * done not called. */
    int (*presence_of)(const int64_t *ids, size_t n,
                       void (*done)(void *arg, const unsigned char *online), void *arg);
    /* submit(), where write jobs of one nonzero key (a channel id, say) run
     * one after another in the order submitted, and jobs of different keys
     * may run side by side. Key 0 is submit()'s: no order promised. */
    int (*submit_keyed)(chatd_plugin *p, int flags, uint64_t key, chatd_job_run run,
                        chatd_job_done done, void *arg);

    /* ---- ABI 1.1: push that loses nothing ---- */

    /*
     * Inside a write job's run(): record in its transaction that the event
     * (type and body, borrowed) is to be offered to push, for the channel's
     * members but except_user (channel_id > 0) or for user_id, so it is
     * stored before the change is told to anyone. Returns the intent's
     * reference (> 0), 0 when no plugin takes push intents (nothing is
     * written), or a negative CHATD_E* (the job should fail).
     */
    int64_t (*push_intent)(chatd_db *db, int64_t channel_id, int64_t user_id, int64_t except_user,
                           const char *type, const json_t *body);
    /* push_absent() and notify_user() for an intent the job wrote (ref 0:
     * none): the UNDELIVERABLE events carry ref, and PUSH_SETTLED follows. */
    void (*push_absent_ref)(int64_t ref, int64_t channel_id, const int64_t *user_ids,
                            const char *const *usernames, size_t n, const char *type, json_t *body);
    int (*notify_user_ref)(int64_t ref, int64_t user_id, const char *username, const char *type,
                           json_t *body);
    /* The session key (hex of its token's SHA-256) of the request's
     * WebSocket, borrowed; NULL once the session has ended. */
    const char *(*req_session_key)(chatd_req *req);
    /* Add a sample (microseconds) to the histogram chatd_<name>_seconds at
     * /metrics. */
    void (*observe_us)(chatd_plugin *p, const char *name, uint64_t us);
    /* The loop's struct event_base (libevent), for a plugin that keeps
     * sockets of its own (an HTTP client); its events run on the loop
     * thread like everything else of the plugin, and must be gone when
     * cleanup() returns. */
    void *(*event_base)(void);
    /* Set the gauge chatd_<name> at /metrics. */
    void (*gauge)(chatd_plugin *p, const char *name, int64_t value);

    /* ---- ABI 1.1: HTTP requests, the nodes ---- */

    /* The request's path, percent-decoded, without the query; borrowed. */
    const char *(*http_path)(const chatd_http *req);
    /* The value of key in the query string, percent-decoded into buf (len
     * bytes); NULL when absent or too long. */
    const char *(*http_query)(const chatd_http *req, const char *key, char *buf, size_t len);
    /* What every live node says of itself: done(arg, nodes) on the loop with
     * a JSON array of {"node","connections","users"} ("node" is the node's
     * random id, "local" without Redis; each object may carry more keys;
     * connections are WebSockets, users those with one there; borrowed for the
     * call; this node's alone without Redis, NULL when Redis could not be
     * asked). 0 or CHATD_ENOMEM (done not called). */
    int (*node_stats)(void (*done)(void *arg, const json_t *nodes), void *arg);
    /* session_end_http() and session_end_user() whose done(arg) runs once no
     * node accepts the tokens any more: answer the request then. done may
     * run before this returns; it runs on the loop either way. 0 or
     * CHATD_ENOTFOUND (no session behind req; done not called). */
    int (*session_end_http_then)(chatd_http *req, void (*done)(void *arg), void *arg);
    int (*session_end_user_then)(int64_t user_id, void (*done)(void *arg), void *arg);

    /* ---- ABI 1.1: hooks on the message path ---- */

    /* Filter every WRITE_MESSAGE and EDIT_MESSAGE before it is stored (see
     * chatd_message_filter); filters run in the order they were registered
     * (the config's order). init() only. 0 or CHATD_ENOMEM. */
    int (*on_message_filter)(chatd_plugin *p, chatd_message_filter fn);
    /* A filter's verdict, exactly one per call of the filter (also after
     * its deadline): pass the message on; reject it with a wire error (the
     * writer gets it, nothing is stored); or pass it on with new content
     * (copied; the rules of content still apply). */
    void (*filter_pass)(chatd_filter *f);
    void (*filter_reject)(chatd_filter *f, chatd_error_code code, const char *message);
    void (*filter_replace)(chatd_filter *f, const char *content);
    /* For the plugin that stores messages: run the filters on m (borrowed for
     * the call). done(arg, 0, content) to go on with content (borrowed for
     * the call; the original when no filter replaced it), done(arg, <0,
     * code, message) when a filter rejected it, or CHATD_EUNAVAIL past
     * hooks.filter_timeout_ms. Without filters done runs at once. 0 or
     * CHATD_ENOMEM (done not called). */
    int (*filter_message)(const chatd_message_view *m,
                          void (*done)(void *arg, int status, const char *content,
                                       chatd_error_code code, const char *message),
                          void *arg);
    /* How many filters are registered (0: filter_message need not be called). */
    size_t (*filter_count)(void);
    /* Send msg (borrowed; a WebSocket message with "type") as if user_id's
     * WebSocket had sent it, to the plugin that handles its type (a bot's
     * WRITE_MESSAGE, say); answer(arg, reply) gets the reply or ERROR
     * (borrowed for the call), or reply NULL when the type takes no answer.
     * 0, or CHATD_ENOTFOUND when no plugin handles the type (answer not
     * called). */
    int (*request_as)(int64_t user_id, const char *username, const json_t *msg,
                      void (*answer)(void *arg, const json_t *reply), void *arg);
    /* Whether any plugin subscribed to the event type (an event nobody
     * hears need not be made). */
    int (*event_subscribed)(chatd_event_type type);

    /* ---- ABI 1.2: write jobs run together ---- */

    /* From init(): write jobs submitted with run may be run together: the
     * consecutive ones of a batch in one call of run_batch. Jobs of one key
     * keep their order; run() stays the way each runs alone. 0,
     * CHATD_EINVAL or CHATD_ENOMEM. */
    int (*job_batch)(chatd_plugin *p, chatd_job_run run, chatd_job_run_batch run_batch);
    /* push_intent() for n events at once, in as few statements as the store
     * allows: refs[i] gets in[i]'s reference (0 for every one when no plugin
     * takes push intents). 0 or a negative CHATD_E* (the job should fail). */
    int (*push_intents)(chatd_db *db, const chatd_intent *in, size_t n, int64_t *refs);

    /* ---- ABI 1.3 ---- */

    /* user_in_channel(), or entered on another node as Redis found it
     * lately (redis.entered_cache_ms): for the decision whether a write
     * needs a push intent, not for a decision that must be exact (the check
     * after the commit, push_absent(), finds who has left since). */
    int (*user_entered)(int64_t user_id, int64_t channel_id);

    /* ---- ABI 1.4 ---- */

    /* db_step() of a statement that returns no rows (an UPDATE, an INSERT
     * whose error and changed rows the job need not see at once), inside a
     * job's transaction: the store may run it later, with the job's next
     * statement or its commit, in the same round trip to a server
     * (MariaDB); statements still run in the order they were stepped.
     * CHATD_DONE, or a negative CHATD_E*; an error of the statement itself
     * may come from the next statement's db_step() or fail the commit (the
     * job then runs again, or fails). db_changes() says nothing of it.
     * SQLite runs it at once, as db_step(). */
    int (*db_step_later)(chatd_stmt *st);
} chatd_host;

/*
 * A token bucket, compiled into the caller (a helper, not a host call):
 * refill *tokens by rate per second since *last_ms, up to burst, then take
 * one token at now_ms. 1 when one was taken, 0 when the bucket is empty. A
 * new bucket starts full: *tokens = burst, *last_ms = now_ms.
 */
static inline int chatd_bucket_take(double *tokens, int64_t *last_ms, double rate, double burst,
                                    int64_t now_ms)
{
    *tokens += (double)(now_ms - *last_ms) * rate / 1000.0;
    if (*tokens > burst)
        *tokens = burst;
    *last_ms = now_ms;
    if (*tokens < 1.0)
        return 0;
    *tokens -= 1.0;
    return 1;
}

/* True when the host offers the given field (it may be older than this header). */
#define CHATD_HOST_HAS(host, field)                                                                \
    ((host)->struct_size >= offsetof(chatd_host, field) + sizeof((host)->field) &&                 \
     (host)->field != NULL)

/*
 * The plugin descriptor. init() gets:
 *   p       this plugin's handle (pass it back to host calls),
 *   host    the host table (borrowed, valid until cleanup returns),
 *   config  this plugin's entry of the config's plugins list as a JSON object
 *           (borrowed, valid until init returns; copy what you keep),
 * and sets *state to anything it wants handed back to its callbacks. A
 * negative return stops chatd's start-up. cleanup(state) is called once at
 * shutdown, after the last job of the plugin completed — and also after a
 * failed init, when init had set a non-NULL *state.
 */
typedef struct chatd_plugin_desc {
    size_t struct_size;
    int abi_major;
    int abi_minor;
    const char *name;
    const char *version;
    int (*init)(chatd_plugin *p, const chatd_host *host, const json_t *config, void **state);
    void (*cleanup)(void *state);
    /* ABI 1.1: the settings of the plugin's config entry, ended by one with
     * name NULL (see chatd_setting); NULL: not declared, not checked. */
    const struct chatd_setting *settings;
} chatd_plugin_desc;

/*
 * ABI 1.1: one setting of a plugin's config entry, declared so that the core
 * checks it with its own settings (--check-config names the file, line and
 * setting of anything unknown, mistyped or out of range; chatd --help lists
 * them) and hands init() the entry with the defaults filled in. "name",
 * "path" and "store" are the core's and need no declaring.
 */
typedef enum {
    CHATD_SETTING_INT = 1, /* an integer in min..max */
    CHATD_SETTING_STRING,  /* any string (choices NULL) or one of choices */
    CHATD_SETTING_BOOL,
    CHATD_SETTING_STRINGS, /* a list of strings */
} chatd_setting_type;

typedef struct chatd_setting {
    const char *name;
    chatd_setting_type type;
    int64_t def_int, min, max;  /* INT (and BOOL: def_int 0 or 1) */
    const char *def_str;        /* STRING: the default, NULL for none (the plugin decides) */
    const char *const *choices; /* STRING: the values allowed, NULL-terminated; NULL: any */
    const char *doc;            /* one line */
} chatd_setting;

#define CHATD_INT_SETTING(n, def, lo, hi, doc)                                                     \
    {                                                                                              \
        (n), CHATD_SETTING_INT, (def), (lo), (hi), NULL, NULL, (doc)                               \
    }
#define CHATD_STRING_SETTING(n, def, choices, doc)                                                 \
    {                                                                                              \
        (n), CHATD_SETTING_STRING, 0, 0, 0, (def), (choices), (doc)                                \
    }
#define CHATD_SETTINGS_END                                                                         \
    {                                                                                              \
        NULL, 0, 0, 0, 0, NULL, NULL, NULL                                                         \
    }

/* The one exported symbol of a plugin. */
#define CHATD_PLUGIN_ENTRY_SYMBOL "chatd_plugin_entry"
typedef const chatd_plugin_desc *(*chatd_plugin_entry_fn)(void);

/* Define the entry point; use once per plugin with a static descriptor. */
#define CHATD_PLUGIN(desc)                                                                         \
    __attribute__((visibility("default"))) const chatd_plugin_desc *chatd_plugin_entry(void);      \
    __attribute__((visibility("default"))) const chatd_plugin_desc *chatd_plugin_entry(void)       \
    {                                                                                              \
        return &(desc);                                                                            \
    }

/* Initialiser for the descriptor's first fields. */
#define CHATD_PLUGIN_DESC_HEAD                                                                     \
    .struct_size = sizeof(chatd_plugin_desc), .abi_major = CHATD_ABI_MAJOR,                        \
    .abi_minor = CHATD_ABI_MINOR

#ifdef __cplusplus
}
#endif
#endif /* CHATD_PLUGIN_H */
