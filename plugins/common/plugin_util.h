/*
 * Helpers shared by chatd's in-tree plugins (linked statically into each):
 * SQL with bound parameters in one call, the wire's field rules, and the
 * mapping of job statuses to error codes. Built only on <chatd/plugin.h>.
 */
#ifndef CHATD_PLUGIN_UTIL_H
#define CHATD_PLUGIN_UTIL_H

#include <chatd/plugin.h>
#include <stdint.h>

#define UTIL_INVITE_LEN 10
#define UTIL_NAME_MAX 64

/*
 * Prepare sql and bind its '?' parameters from the arguments, one letter of
 * fmt per parameter: 'i' int64_t, 'n' int64_t that binds NULL when 0, 's'
 * const char * (NULL binds NULL).
 * Returns the statement (owned by the connection) or NULL. Worker thread.
 */
chatd_stmt *util_bind(const chatd_host *h, chatd_db *db, const char *sql, const char *fmt, ...);
/* Run a statement that returns no rows: 0 or a negative CHATD_E*. */
int util_exec(const chatd_host *h, chatd_db *db, const char *sql, const char *fmt, ...);
/* util_exec whose statement may run later, with the job's next statement or
 * its commit (host->db_step_later; at once on an older host). */
int util_exec_later(const chatd_host *h, chatd_db *db, const char *sql, const char *fmt, ...);
/* host->db_step_later(st), or db_step on a host older than ABI 1.4. */
int util_step_later(const chatd_host *h, chatd_stmt *st);
/* The first column of the first row as an integer: 0, CHATD_ENOTFOUND, or an error. */
int util_int(const chatd_host *h, chatd_db *db, int64_t *out, const char *sql, const char *fmt,
             ...);
/* " FOR UPDATE" on dialects that lock rows that way, "" on SQLite (whose one
 * writer already serialises). For appending to a SELECT. */
const char *util_for_update(const chatd_host *h, chatd_db *db);

/* An integer setting of the plugin's config: def when absent; a value that is
 * not an integer in lo..hi is logged with its name and gives CHATD_EINVAL. */
int util_conf_int(const chatd_host *h, chatd_plugin *p, const json_t *conf, const char *key,
                  int64_t def, int64_t lo, int64_t hi, int64_t *out);
/* An integer setting the plugin declared in defs (default and range taken
 * from there; the core has checked it when it checks plugin settings). A
 * key missing from defs is a bug: CHATD_EINVAL, logged. */
int util_setting_int(const chatd_host *h, chatd_plugin *p, const json_t *conf,
                     const chatd_setting *defs, const char *key, int64_t *out);
/* The SQL backends a plugin's `backend` may name. */
extern const char *const util_sql_backends[];

/* Fail init unless the host is as new as the in-tree plugins (ABI 1.1, push
 * intents) and the plugin has a SQL storage backend (logs why). */
int util_need_sql(const chatd_host *h, chatd_plugin *p);

/* qsort/bsearch order of int64_t (also of structures that start with one). */
int util_cmp_i64(const void *a, const void *b);

/* A channel id on input: a positive integer or {"id": positive integer}. 0 or CHATD_EINVAL. */
int util_channel_id(const json_t *v, int64_t *out);
/* {"id": id} as a new reference. */
json_t *util_channel_json(int64_t id);
/* A random invite code: UTIL_INVITE_LEN characters without look-alikes, NUL-terminated. */
void util_invite_code(const chatd_host *h, char out[UTIL_INVITE_LEN + 1]);
/* RFC 3339 UTC with milliseconds ("2026-11-24T20:48:29.254Z") into out (>= 32 bytes). */
void util_time_rfc3339(int64_t ms, char *out, size_t len);
/* Number of UTF-8 characters of a valid UTF-8 string. */
size_t util_utf8_chars(const char *s);

/* What a user's membership of a channel looks like. */
struct util_member {
    char title[512];
    int64_t head_count, last_seq, last_read;
    int64_t member_version; /* changes whenever the members do */
    int64_t version;        /* grows with every change in the channel */
    int64_t created_by;     /* the user who created the channel */
    int direct;             /* a direct channel (two members, ever) */
};

/* The channel, when user_id is a member: 0, CHATD_ENOTFOUND (no such channel)
 * or CHATD_EFORBIDDEN (not a member). Locks the channel row where the
 * dialect needs it when for_update. info may be NULL. Worker thread. */
int util_channel_member(const chatd_host *h, chatd_db *db, int64_t channel_id, int64_t user_id,
                        int for_update, struct util_member *info);

/* Token buckets keyed by id (a user, say): `rate` per second, `burst` at
 * once. Loop thread only. Idle keys are dropped, so memory follows the keys
 * active within the last few seconds. */
struct util_buckets;
struct util_buckets *util_buckets_new(const chatd_host *h, int64_t rate, int64_t burst);
void util_buckets_free(struct util_buckets *b);
/* Take one token for key at now_ms: 1 allowed, 0 over the limit. */
int util_buckets_take(struct util_buckets *b, int64_t key, int64_t now_ms);

/* Answer req with the ERROR that a job status means (CHATD_ENOTFOUND ->
 * NOT_FOUND, ...); message borrowed, used for every code but UNAVAILABLE and
 * INTERNAL. Completes req. */
void util_error_status(const chatd_host *h, chatd_req *req, int status, const char *message);

#endif
