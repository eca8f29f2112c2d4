#include "session.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "conn.h"
#include "db.h"
#include "hmap.h"
#include "log.h"
#include "metrics.h"
#include "plugins.h"
#include "presence.h"
#include "store.h"
#include "ws.h"

#define CLOSE_SESSION_ENDED 4001

struct session {
    char key[2 * SHA256_DIGEST_LENGTH + 1]; /* hex of the token's SHA-256 */
    int64_t user_id;
    char *username;
    int64_t expires_s;   /* wall clock */
    int64_t persisted_s; /* expiry as last written to the store */
    struct conn *conns;  /* WebSockets opened with this session */
};

static struct {
    const struct settings *s;
    struct store_backend *backend;
    hmap *by_key;   /* token hash hex -> session */
    int sweep_ticks;
} ss;

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static void hash_key(const char *token, char out[2 * SHA256_DIGEST_LENGTH + 1])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static int token_well_formed(const char *t)
{
    size_t n = 0;
    for (; t[n]; n++) {
        char ch = t[n];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return 0;
    }
    return n == SESSION_TOKEN_LEN;
}

static void session_free(struct session *s)
{
    free(s->username);
    free(s);
}

static struct session *session_add(const char *key, int64_t uid, const char *name, int64_t exp)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s || !(s->username = strdup(name))) {
        free(s);
        return NULL;
    }
    memcpy(s->key, key, sizeof s->key);
    s->user_id = uid;
    s->expires_s = s->persisted_s = exp;
    if (hmap_put_str(ss.by_key, key, s) < 0) {
        session_free(s);
        return NULL;
    }
    return s;
}

/* ---- store jobs ---- */

struct sjob {
    char key[2 * SHA256_DIGEST_LENGTH + 1];
    int64_t user_id;
    char *username;
    int64_t expires_s;
    void (*done)(void *arg, int status);
    void *arg;
};

static void sjob_free(struct sjob *j)
{
    free(j->username);
    free(j);
}

static int step_done(chatd_db *db, chatd_stmt *st)
{
    (void)db;
    int rc = st->db->drv->step(st);
    return rc == CHATD_DONE ? 0 : rc < 0 ? rc : CHATD_EINTERNAL;
}

static int run_insert(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, "INSERT INTO user_session (token_hash, user_id, username,"
                                    " created_at, expires_at) VALUES (?, ?, ?, ?, ?)");
    if (!st)
        return CHATD_EINTERNAL;
    d->bind_text(st, 1, j->key, strlen(j->key));
    d->bind_int(st, 2, j->user_id);
    d->bind_text(st, 3, j->username, strlen(j->username));
    d->bind_int(st, 4, now_s());
    d->bind_int(st, 5, j->expires_s);
    return step_done(db, st);
}

static int run_delete(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, j->user_id ? "DELETE FROM user_session WHERE user_id = ?"
                                               : "DELETE FROM user_session WHERE token_hash = ?");
    if (!st)
        return CHATD_EINTERNAL;
    if (j->user_id)
        d->bind_int(st, 1, j->user_id);
    else
        d->bind_text(st, 1, j->key, strlen(j->key));
    return step_done(db, st);
}

static int run_touch(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, "UPDATE user_session SET expires_at = ? WHERE token_hash = ?");
    if (!st)
        return CHATD_EINTERNAL;
    d->bind_int(st, 1, j->expires_s);
    d->bind_text(st, 2, j->key, strlen(j->key));
    return step_done(db, st);
}

static int run_purge(chatd_db *db, void *arg)
{
    struct sjob *j = arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, "DELETE FROM user_session WHERE expires_at <= ?");
    if (!st)
        return CHATD_EINTERNAL;
    d->bind_int(st, 1, j->expires_s);
    return step_done(db, st);
}

static void job_done(void *arg, int status)
{
    struct sjob *j = arg;
    if (status < 0)
        log_warn("session store write failed (%d)", status);
    if (j->done)
        j->done(j->arg, status);
    sjob_free(j);
}

static int submit(chatd_job_run run, const char *key, int64_t uid, int64_t exp,
                  void (*done)(void *, int), void *arg)
{
    struct sjob *j = calloc(1, sizeof *j);
    if (!j)
        return CHATD_ENOMEM;
    if (key)
        memcpy(j->key, key, sizeof j->key);
    j->user_id = uid;
    j->expires_s = exp;
    j->done = done;
    j->arg = arg;
    int rc = store_submit(ss.backend, CHATD_JOB_WRITE, run, job_done, j);
    if (rc < 0)
        sjob_free(j);
    return rc;
}

/* ---- start-up load ---- */

static int run_load(chatd_db *db, void *arg)
{
    (void)arg;
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, "SELECT token_hash, user_id, username, expires_at"
                                    " FROM user_session WHERE expires_at > ?");
    if (!st)
        return CHATD_EINTERNAL;
    d->bind_int(st, 1, now_s());
    int rc;
    while ((rc = d->step(st)) == CHATD_ROW) {
        const char *key = d->column_text(st, 0, NULL);
        if (!key || strlen(key) != 2 * SHA256_DIGEST_LENGTH)
            continue;
        if (!session_add(key, d->column_int(st, 1), d->column_text(st, 2, NULL),
                         d->column_int(st, 3)))
            return CHATD_ENOMEM;
    }
    return rc == CHATD_DONE ? 0 : rc;
}

int session_init(const struct settings *s, struct store_backend *b)
{
    ss.s = s;
    ss.backend = b;
    if (!(ss.by_key = hmap_new(1)))
        return CHATD_ENOMEM;
    int rc = store_run_sync(b, run_load, NULL);
    if (rc == 0)
        log_info("loaded %zu live sessions", hmap_count(ss.by_key));
    return rc;
}

void session_free_all(void)
{
    size_t pos = 0;
    void *v;
    if (ss.by_key)
        while (hmap_iter(ss.by_key, &pos, NULL, NULL, &v))
            session_free(v);
    hmap_free(ss.by_key);
    memset(&ss, 0, sizeof ss);
}

/* ---- lookups ---- */

int session_expired(const struct session *s)
{
    return now_s() >= s->expires_s;
}

struct session *session_find(const char *token)
{
    if (!token || !token_well_formed(token))
        return NULL;
    char key[2 * SHA256_DIGEST_LENGTH + 1];
    hash_key(token, key);
    struct session *s = hmap_get_str(ss.by_key, key);
    /* The map is keyed by the token's hash: a lookup never compares the secret
     * itself, so its timing tells nothing about a valid token. */
    if (s && session_expired(s)) {
        session_end(s);
        return NULL;
    }
    return s;
}

const char *session_key(const struct session *s)
{
    return s->key;
}

struct session *session_find_key(const char *key)
{
    struct session *s = hmap_get_str(ss.by_key, key);
    return s && !session_expired(s) ? s : NULL;
}

int64_t session_user_id(const struct session *s)
{
    return s->user_id;
}

const char *session_username(const struct session *s)
{
    return s->username;
}

int64_t session_ttl(void)
{
    return ss.s->session_ttl;
}

size_t session_count(void)
{
    return ss.by_key ? hmap_count(ss.by_key) : 0;
}

/* ---- create, end, touch ---- */

int session_create(int64_t user_id, const char *username, char *out,
                   void (*done)(void *arg, int status), void *arg)
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return CHATD_EINTERNAL;
    /* base64url without padding: 43 characters */
    char b64[48];
    EVP_EncodeBlock((unsigned char *)b64, raw, sizeof raw);
    size_t n = 0;
    for (; b64[n] && b64[n] != '='; n++)
        b64[n] = b64[n] == '+' ? '-' : b64[n] == '/' ? '_' : b64[n];
    b64[n] = '\0';
    OPENSSL_cleanse(raw, sizeof raw);
    char key[2 * SHA256_DIGEST_LENGTH + 1];
    hash_key(b64, key);
    struct session *s = session_add(key, user_id, username, now_s() + ss.s->session_ttl);
    if (!s)
        return CHATD_ENOMEM;
    struct sjob *j = calloc(1, sizeof *j);
    if (!j || !(j->username = strdup(username))) {
        free(j);
        hmap_del_str(ss.by_key, key);
        session_free(s);
        return CHATD_ENOMEM;
    }
    memcpy(j->key, key, sizeof key);
    j->user_id = user_id;
    j->expires_s = s->expires_s;
    j->done = done;
    j->arg = arg;
    int rc = store_submit(ss.backend, CHATD_JOB_WRITE, run_insert, job_done, j);
    if (rc < 0) {
        sjob_free(j);
        hmap_del_str(ss.by_key, key);
        session_free(s);
        return rc;
    }
    memcpy(out, b64, n + 1);
    OPENSSL_cleanse(b64, sizeof b64);
    metrics_count("sessions_created", 1);
    return 0;
}

/* Close the session's sockets and forget it; the caller deletes the row. */
static void forget(struct session *s)
{
    while (s->conns) {
        struct conn *c = s->conns;
        ws_close(c, CLOSE_SESSION_ENDED, "session ended"); /* detaches c */
        if (s->conns == c)
            session_detach(c);
    }
    hmap_del_str(ss.by_key, s->key);
    session_free(s);
}

void session_end(struct session *s)
{
    char key[sizeof s->key];
    memcpy(key, s->key, sizeof key);
    forget(s);
    if (submit(run_delete, key, 0, 0, NULL, NULL) < 0)
        log_warn("cannot queue a session delete");
}

void session_end_user(int64_t user_id)
{
    struct session **victims = NULL;
    size_t n = 0, pos = 0;
    void *v;
    while (hmap_iter(ss.by_key, &pos, NULL, NULL, &v)) {
        struct session *s = v;
        if (s->user_id != user_id)
            continue;
        struct session **nv = realloc(victims, (n + 1) * sizeof *nv);
        if (!nv)
            break;
        victims = nv;
        victims[n++] = s;
    }
    for (size_t i = 0; i < n; i++)
        forget(victims[i]);
    free(victims);
    if (submit(run_delete, NULL, user_id, 0, NULL, NULL) < 0)
        log_warn("cannot queue a session delete");
}

void session_touch(struct session *s)
{
    s->expires_s = now_s() + ss.s->session_ttl;
    /* Write the new expiry only when it moved a tenth of the TTL (at most a
     * minute): a busy client's KEEP_ALIVEs cost memory updates, not commits. */
    int64_t slack = ss.s->session_ttl / 10;
    if (slack > 60)
        slack = 60;
    if (s->expires_s - s->persisted_s >= slack &&
        submit(run_touch, s->key, 0, s->expires_s, NULL, NULL) == 0)
        s->persisted_s = s->expires_s;
}

/* ---- WebSockets of sessions and users ---- */

void session_attach(struct conn *c, struct session *s)
{
    c->session = s;
    c->user_id = s->user_id;
    c->s_prev = NULL;
    c->s_next = s->conns;
    if (s->conns)
        s->conns->s_prev = c;
    s->conns = c;
    if (presence_add(c) < 0)
        log_warn("conn %llu: out of memory indexing the user", (unsigned long long)c->id);
    metrics_gauge("ws_connections", presence_count());
    chatd_event ev = {.type = CHATD_EVENT_CONN_OPENED, .user_id = s->user_id, .conn_id = c->id,
                      .username = s->username};
    plugins_emit(&ev);
}

void session_detach(struct conn *c)
{
    struct session *s = c->session;
    if (!s)
        return;
    if (c->s_prev)
        c->s_prev->s_next = c->s_next;
    else
        s->conns = c->s_next;
    if (c->s_next)
        c->s_next->s_prev = c->s_prev;
    int64_t user_id = c->user_id;
    presence_remove(c);
    c->session = NULL;
    c->s_prev = c->s_next = NULL;
    metrics_gauge("ws_connections", presence_count());
    chatd_event ev = {.type = CHATD_EVENT_CONN_CLOSED, .user_id = user_id, .conn_id = c->id,
                      .username = s->username};
    plugins_emit(&ev);
}

void session_sweep(void)
{
    if (++ss.sweep_ticks < 60)
        return;
    ss.sweep_ticks = 0;
    struct session **expired = NULL;
    size_t n = 0, pos = 0;
    void *v;
    int64_t now = now_s();
    while (hmap_iter(ss.by_key, &pos, NULL, NULL, &v)) {
        struct session *s = v;
        if (now < s->expires_s)
            continue;
        struct session **ne = realloc(expired, (n + 1) * sizeof *ne);
        if (!ne)
            break;
        expired = ne;
        expired[n++] = s;
    }
    for (size_t i = 0; i < n; i++)
        forget(expired[i]);
    free(expired);
    submit(run_purge, NULL, 0, now, NULL, NULL);
}
