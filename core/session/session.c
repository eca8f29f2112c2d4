#include "session.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "hmap.h"
#include "http.h"
#include "log.h"
#include "redis.h"
#include "metrics.h"
#include "session_store.h"
#include "store.h"
#include "ws.h"

#define KEY_LEN SESSION_KEY_LEN
_Static_assert(KEY_LEN == 2 * SHA256_DIGEST_LENGTH, "a key is the hex of a SHA-256");

struct session {
    char key[KEY_LEN + 1]; /* hex of the token's SHA-256 */
    int64_t user_id;
    char *username;
    int64_t expires_s;                     /* wall clock */
    int64_t persisted_s;                   /* expiry as last written to the store */
    struct client *clients;                /* WebSockets opened with this session */
    struct session *live_prev, *live_next; /* sessions with WebSockets (ss.live) */
    int rechecking; /* expired here: asking the shared store whether it lives on */
};

static struct {
    const struct settings *s;
    const struct session_store *store;
    hmap *by_key;         /* token hash hex -> session */
    struct session *live; /* the sessions that have WebSockets */
    struct event *sweep;
    int64_t last_purge_s;
    unsigned sub_epoch; /* redis_sub_epoch() when the map was last trusted */
} ss;

static int64_t now_s(void)
{
    return clock_wall_s();
}

static void hash_key(const char *token, char out[KEY_LEN + 1])
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

static void live_link(struct session *s)
{
    s->live_prev = NULL;
    s->live_next = ss.live;
    if (ss.live)
        ss.live->live_prev = s;
    ss.live = s;
}

static void live_unlink(struct session *s)
{
    if (s->live_prev)
        s->live_prev->live_next = s->live_next;
    else if (ss.live == s)
        ss.live = s->live_next;
    if (s->live_next)
        s->live_next->live_prev = s->live_prev;
    s->live_prev = s->live_next = NULL;
}

static void session_free(struct session *s)
{
    free(s->username);
    free(s);
}

static struct session *session_add(const char *key, int64_t uid, const char *name, int64_t exp)
{
    struct session *s = hmap_get_str(ss.by_key, key);
    if (s) { /* known already (a lookup raced another): keep the later expiry */
        if (exp > s->expires_s)
            s->expires_s = s->persisted_s = exp;
        return s;
    }
    if (!(s = calloc(1, sizeof *s)) || !(s->username = strdup(name))) {
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

static void add_loaded(const char *key, int64_t uid, const char *name, int64_t exp)
{
    if (!session_add(key, uid, name, exp))
        log_warn("out of memory loading sessions");
}

static void on_sweep(evutil_socket_t fd, short what, void *arg);
static void remote_end(const char *key);
static void remote_touch(const char *key, int64_t expires_s);
static void forget_user(int64_t user_id);

int session_init(struct event_base *base, const struct settings *s, struct store_backend *b)
{
    ss.s = s;
    ss.last_purge_s = now_s();
    if (!(ss.by_key = hmap_new(1)) || !(ss.sweep = event_new(base, -1, EV_PERSIST, on_sweep, NULL)))
        return CHATD_ENOMEM;
    /* Sessions with WebSockets are checked every second: a session's end by
     * its TTL closes them (4001) as a logout does. */
    struct timeval second = {1, 0};
    event_add(ss.sweep, &second);
    int rc;
    if (strcmp(s->session_backend, "redis") == 0) {
        static const struct session_store_events remote = {
            .end = remote_end,
            .end_user = forget_user,
            .touch = remote_touch,
        };
        ss.store = &session_redis;
        rc = session_redis_init(base, s, &remote);
    } else {
        ss.store = &session_sql;
        rc = session_sql_init(b, add_loaded);
        if (rc == 0)
            log_info("loaded %zu live sessions", hmap_count(ss.by_key));
    }
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
    if (ss.store == &session_redis)
        session_redis_free();
    if (ss.sweep)
        event_free(ss.sweep);
    memset(&ss, 0, sizeof ss);
}

/* ---- lookups ---- */

int session_expired(const struct session *s)
{
    return now_s() >= s->expires_s;
}

int session_live_at(const struct session *s, int64_t now)
{
    return s && now < s->expires_s;
}

struct session *session_find_key(const char *key)
{
    struct session *s = hmap_get_str(ss.by_key, key);
    return s && !session_expired(s) ? s : NULL;
}

struct lookup {
    char key[KEY_LEN + 1];
    session_lookup_fn cb;
    void *arg;
};

static void found(void *arg, int status, int64_t uid, const char *name, int64_t exp)
{
    struct lookup *l = arg;
    struct session *s = NULL;
    if (status == 0 && uid > 0 && exp > now_s())
        s = session_add(l->key, uid, name, exp);
    l->cb(s, status, l->arg);
    free(l);
}

static void release(struct session *s);

/* Drop a session nothing here uses: the next request with its token asks
 * the shared store. One with WebSockets keeps them (the store may have lost
 * its data in a restart: its sockets go on, as they did while it was down). */
static int distrust(uint64_t id, const char *key, void *value, void *arg)
{
    struct session *s = value;
    (void)id, (void)key, (void)arg;
    if (s->clients)
        return 0;
    release(s);
    return 1;
}

/* With sessions shared in Redis a session known here is trusted only while
 * its end could not have been missed: the subscription that tells ends is
 * up, and has not been down since. */
static int map_trusted(void)
{
    if (ss.store != &session_redis)
        return 1;
    if (!redis_sub_ready())
        return 0;
    if (ss.sub_epoch != redis_sub_epoch()) {
        ss.sub_epoch = redis_sub_epoch();
        hmap_sweep(ss.by_key, distrust, NULL);
    }
    return 1;
}

int session_lookup(const char *token, session_lookup_fn cb, void *arg)
{
    if (!token || !token_well_formed(token))
        return cb(NULL, 0, arg), 0;
    char key[KEY_LEN + 1];
    hash_key(token, key);
    /* Keyed by the token's hash: a lookup never compares the secret itself,
     * so its timing tells nothing about a valid token. */
    int trusted = map_trusted(); /* first: it may drop sessions from the map */
    struct session *s = hmap_get_str(ss.by_key, key);
    if (s && session_expired(s)) {
        session_end(s);
        s = NULL;
    }
    if (!trusted)
        s = NULL; /* an end may have been missed: ask the store, which may be down too */
    if (s || !ss.store->lookup)
        return cb(s, 0, arg), 0;
    /* Another node's session, perhaps: ask the shared store. */
    struct lookup *l = malloc(sizeof *l);
    if (!l)
        return cb(NULL, CHATD_ENOMEM, arg), 0;
    memcpy(l->key, key, sizeof key);
    l->cb = cb;
    l->arg = arg;
    int rc = ss.store->lookup(key, found, l);
    if (rc < 0) {
        free(l);
        cb(NULL, rc, arg);
    }
    return 0;
}

const char *session_key(const struct session *s)
{
    return s->key;
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
    char key[KEY_LEN + 1];
    hash_key(b64, key);
    int64_t exp = now_s() + ss.s->session_ttl;
    int rc = ss.store->create(key, user_id, username, exp, done, arg);
    if (rc == 0 && !session_add(key, user_id, username, exp))
        rc = CHATD_ENOMEM; /* stored, but unknown here: a later lookup finds it */
    if (rc == 0) {
        memcpy(out, b64, n + 1);
        metrics_count("sessions_created", 1);
    }
    OPENSSL_cleanse(b64, sizeof b64);
    return rc;
}

/* Close the session's sockets here (4001) and free it; the map and the
 * store are the caller's. */
static void release(struct session *s)
{
    while (s->clients) {
        struct client *c = s->clients;
        session_detach(c);
        ws_close(c->conn, SESSION_CLOSE_ENDED, "session ended");
    }
    live_unlink(s);
    session_free(s);
}

/* End the session here; the store is told apart. */
static void forget(struct session *s)
{
    hmap_del_str(ss.by_key, s->key);
    release(s);
}

void session_end_then(struct session *s, void (*done)(void *arg), void *arg)
{
    char key[KEY_LEN + 1];
    int64_t uid = s->user_id;
    memcpy(key, s->key, sizeof key);
    forget(s);
    ss.store->end(key, uid, done, arg);
}

void session_end(struct session *s)
{
    session_end_then(s, NULL, NULL);
}

/* The sessions of a user held here: ended as the map is swept. */
static int forget_if_user(uint64_t id, const char *key, void *value, void *arg)
{
    struct session *s = value;
    (void)id, (void)key;
    if (s->user_id != *(int64_t *)arg)
        return 0;
    release(s);
    return 1;
}

static void forget_user(int64_t user_id)
{
    hmap_sweep(ss.by_key, forget_if_user, &user_id);
}

void session_end_user_then(int64_t user_id, void (*done)(void *arg), void *arg)
{
    forget_user(user_id);
    ss.store->end_user(user_id, done, arg);
}

void session_end_user(int64_t user_id)
{
    session_end_user_then(user_id, NULL, NULL);
}

void session_touch(struct session *s)
{
    s->expires_s = now_s() + ss.s->session_ttl;
    /* Write the new expiry only when it moved a tenth of the TTL (at most a
     * minute): a busy client's KEEP_ALIVEs cost memory updates, not writes. */
    int64_t slack = ss.s->session_ttl / 10;
    if (slack > 60)
        slack = 60;
    if (s->expires_s - s->persisted_s >= slack) {
        ss.store->touch(s->key, s->expires_s);
        s->persisted_s = s->expires_s;
    }
}

/* ---- events of other nodes (through the shared store) ---- */

static void remote_end(const char *key)
{
    struct session *s = hmap_get_str(ss.by_key, key);
    if (s)
        forget(s);
}

static void remote_touch(const char *key, int64_t expires_s)
{
    struct session *s = hmap_get_str(ss.by_key, key);
    if (s && expires_s > s->expires_s)
        s->expires_s = s->persisted_s = expires_s;
}

/* ---- WebSockets of sessions ---- */

void session_attach(struct client *c, struct session *s)
{
    c->session = s;
    c->user_id = s->user_id;
    c->s_prev = NULL;
    c->s_next = s->clients;
    if (s->clients)
        s->clients->s_prev = c;
    else
        live_link(s);
    s->clients = c;
}

void session_detach(struct client *c)
{
    struct session *s = c->session;
    if (!s)
        return;
    if (c->s_prev)
        c->s_prev->s_next = c->s_next;
    else
        s->clients = c->s_next;
    if (c->s_next)
        c->s_next->s_prev = c->s_prev;
    if (!s->clients)
        live_unlink(s);
    c->session = NULL;
    c->s_prev = c->s_next = NULL;
}

/* The shared store's answer for a session that expired here: it lives on
 * (touched on another node) or it ends. */
static void rechecked(void *arg, int status, int64_t uid, const char *name, int64_t exp)
{
    (void)name;
    char *key = arg;
    struct session *s = hmap_get_str(ss.by_key, key);
    free(key);
    if (!s)
        return;
    s->rechecking = 0;
    if (status == 0 && uid == s->user_id && exp > now_s()) {
        s->expires_s = s->persisted_s = exp;
        return;
    }
    forget(s); /* ended, or the store cannot say: the expiry known here stands */
}

/* Keys of the sessions (of those with WebSockets) whose TTL ran out; the
 * caller frees the array and its strings. Keys, not pointers: ending one
 * session runs plugin callbacks that may end others. */
static char **expired_keys(int64_t now, size_t *n_out)
{
    char **keys = NULL;
    size_t n = 0;
    for (struct session *s = ss.live; s; s = s->live_next) {
        if (now < s->expires_s || s->rechecking)
            continue;
        char **nk = realloc(keys, (n + 1) * sizeof *nk);
        if (!nk || !(nk[n] = strdup(s->key))) {
            keys = nk ? nk : keys;
            break;
        }
        keys = nk;
        n++;
    }
    *n_out = n;
    return keys;
}

static int drop_if_expired(uint64_t id, const char *key, void *value, void *arg)
{
    struct session *s = value;
    (void)id, (void)key;
    if (s->clients || *(int64_t *)arg < s->expires_s)
        return 0;
    session_free(s);
    return 1;
}

/* Every second: end the sessions with WebSockets whose TTL ran out (asking
 * the shared store first, where another node may have refreshed them); once
 * a minute, purge expired sessions from the store. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    int64_t now = now_s();
    if (ss.store == &session_redis)
        session_redis_resend();
    size_t n = 0;
    char **keys = expired_keys(now, &n);
    for (size_t i = 0; i < n; i++) {
        struct session *s = hmap_get_str(ss.by_key, keys[i]);
        char *copy = s && ss.store->lookup ? strdup(keys[i]) : NULL;
        if (copy) {
            s->rechecking = 1;
            if (ss.store->lookup(keys[i], rechecked, copy) == 0) {
                free(keys[i]);
                continue;
            }
            s = hmap_get_str(ss.by_key, keys[i]); /* the store failed at once */
            free(copy);
        }
        if (s) {
            metrics_count("sessions_expired", 1);
            forget(s);
        }
        free(keys[i]);
    }
    free(keys);
    if (now - ss.last_purge_s >= 60) {
        /* Sessions without WebSockets are forgotten here once expired (a
         * lookup of one forgets it sooner). */
        ss.last_purge_s = now;
        hmap_sweep(ss.by_key, drop_if_expired, &now);
        ss.store->purge(now);
    }
}

int session_remove_user_rows(chatd_db *db, int64_t user_id)
{
    /* Sessions kept in this same database go in the same transaction. */
    if (strcmp(ss.s->session_backend, db->drv->name) != 0)
        return 0;
    return session_sql_remove_user(db, user_id);
}
