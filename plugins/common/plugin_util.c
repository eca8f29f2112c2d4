#include "plugin_util.h"

#include <stdlib.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static chatd_stmt *vbind(const chatd_host *h, chatd_db *db, const char *sql, const char *fmt,
                         va_list ap)
{
    chatd_stmt *st = h->db_prepare(db, sql);
    if (!st)
        return NULL;
    for (int i = 0; fmt[i]; i++) {
        int rc;
        if (fmt[i] == 'i') {
            rc = h->db_bind_int(st, i + 1, va_arg(ap, int64_t));
        } else if (fmt[i] == 'n') {
            int64_t v = va_arg(ap, int64_t);
            rc = v ? h->db_bind_int(st, i + 1, v) : h->db_bind_null(st, i + 1);
        } else {
            const char *s = va_arg(ap, const char *);
            rc = s ? h->db_bind_text(st, i + 1, s, strlen(s)) : h->db_bind_null(st, i + 1);
        }
        if (rc < 0) {
            h->db_reset(st);
            return NULL;
        }
    }
    return st;
}

chatd_stmt *util_bind(const chatd_host *h, chatd_db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    chatd_stmt *st = vbind(h, db, sql, fmt, ap);
    va_end(ap);
    return st;
}

int util_step_later(const chatd_host *h, chatd_stmt *st)
{
    return CHATD_HOST_HAS(h, db_step_later) ? h->db_step_later(st) : h->db_step(st);
}

static int vexec(const chatd_host *h, chatd_db *db, int later, const char *sql, const char *fmt,
                 va_list ap)
{
    chatd_stmt *st = vbind(h, db, sql, fmt, ap);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = later ? util_step_later(h, st) : h->db_step(st);
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc < 0 ? rc : CHATD_EINTERNAL;
}

int util_exec(const chatd_host *h, chatd_db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vexec(h, db, 0, sql, fmt, ap);
    va_end(ap);
    return rc;
}

int util_exec_later(const chatd_host *h, chatd_db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vexec(h, db, 1, sql, fmt, ap);
    va_end(ap);
    return rc;
}

int util_int(const chatd_host *h, chatd_db *db, int64_t *out, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    chatd_stmt *st = vbind(h, db, sql, fmt, ap);
    va_end(ap);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW)
        *out = h->db_column_int(st, 0);
    h->db_reset(st);
    return rc == CHATD_ROW ? 0 : rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
}

const char *util_for_update(const chatd_host *h, chatd_db *db)
{
    return strcmp(h->db_dialect(db), "sqlite") == 0 ? "" : " FOR UPDATE";
}

int util_channel_member(const chatd_host *h, chatd_db *db, int64_t channel_id, int64_t user_id,
                        int for_update, struct util_member *info)
{
    char sql[360];
    snprintf(sql, sizeof sql,
             "SELECT c.title, c.head_count, c.last_msg_seq, cu.last_read_msg_seq, cu.user_id,"
             " c.member_version, c.version, c.created_by, c.kind"
             " FROM channel c LEFT JOIN channel_user cu"
             "   ON cu.channel_id = c.id AND cu.user_id = ?"
             " WHERE c.id = ?%s",
             for_update ? util_for_update(h, db) : "");
    chatd_stmt *st = util_bind(h, db, sql, "ii", user_id, channel_id);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW) {
        if (info) {
            snprintf(info->title, sizeof info->title, "%s", h->db_column_text(st, 0, NULL));
            info->head_count = h->db_column_int(st, 1);
            info->last_seq = h->db_column_int(st, 2);
            info->last_read = h->db_column_int(st, 3);
            info->member_version = h->db_column_int(st, 5);
            info->version = h->db_column_int(st, 6);
            info->created_by = h->db_column_int(st, 7);
            const char *kind = h->db_column_text(st, 8, NULL);
            info->direct = kind && strcmp(kind, "DIRECT") == 0;
        }
        rc = h->db_column_is_null(st, 4) ? CHATD_EFORBIDDEN : 0;
    } else if (rc == CHATD_DONE) {
        rc = CHATD_ENOTFOUND;
    }
    h->db_reset(st);
    return rc;
}

int util_conf_int(const chatd_host *h, chatd_plugin *p, const json_t *conf, const char *key,
                  int64_t def, int64_t lo, int64_t hi, int64_t *out)
{
    const json_t *v = json_object_get(conf, key);
    *out = def;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        h->log(p, CHATD_LOG_ERROR, "setting '%s' must be an integer from %lld to %lld", key,
               (long long)lo, (long long)hi);
        return CHATD_EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

const char *const util_sql_backends[] = {"sqlite", "mariadb", NULL};

int util_setting_int(const chatd_host *h, chatd_plugin *p, const json_t *conf,
                     const chatd_setting *defs, const char *key, int64_t *out)
{
    for (const chatd_setting *d = defs; d->name; d++)
        if (strcmp(d->name, key) == 0 && d->type == CHATD_SETTING_INT)
            return util_conf_int(h, p, conf, key, d->def_int, d->min, d->max, out);
    h->log(p, CHATD_LOG_ERROR, "setting '%s' is not declared", key);
    return CHATD_EINVAL;
}

int util_need_sql(const chatd_host *h, chatd_plugin *p)
{
    if (!CHATD_HOST_HAS(h, notify_user_ref)) {
        h->log(p, CHATD_LOG_ERROR, "this chatd is older than the plugin (ABI 1.1 needed)");
        return CHATD_EINVAL;
    }
    if (h->backend_name(p))
        return 0;
    h->log(p, CHATD_LOG_ERROR, "needs a SQL storage backend: set backend = \"sqlite\"");
    return CHATD_EINVAL;
}

int util_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int util_channel_id(const json_t *v, int64_t *out)
{
    if (json_is_object(v))
        v = json_object_get(v, "id");
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return CHATD_EINVAL;
    *out = json_integer_value(v);
    return 0;
}

json_t *util_channel_json(int64_t id)
{
    return json_pack("{s:I}", "id", (json_int_t)id);
}

void util_invite_code(const chatd_host *h, char out[UTIL_INVITE_LEN + 1])
{
    /* No 0/O or 1/I/L: codes are read aloud and typed by people. */
    static const char alphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    unsigned char r[UTIL_INVITE_LEN];
    h->random_bytes(r, sizeof r);
    for (int i = 0; i < UTIL_INVITE_LEN; i++)
        out[i] = alphabet[r[i] % (sizeof alphabet - 1)];
    out[UTIL_INVITE_LEN] = '\0';
}

void util_time_rfc3339(int64_t ms, char *out, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

size_t util_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

void util_error_status(const chatd_host *h, chatd_req *req, int status, const char *message)
{
    switch (status) {
    case CHATD_EINVAL:
        h->error(req, CHATD_ERR_BAD_REQUEST, message);
        break;
    case CHATD_ENOTFOUND:
        h->error(req, CHATD_ERR_NOT_FOUND, message);
        break;
    case CHATD_ECONFLICT:
        h->error(req, CHATD_ERR_CONFLICT, message);
        break;
    case CHATD_EFORBIDDEN:
        h->error(req, CHATD_ERR_FORBIDDEN, message);
        break;
    case CHATD_ELIMIT:
        h->error(req, CHATD_ERR_LIMIT_EXCEEDED, message);
        break;
    case CHATD_EUNAVAIL:
    case CHATD_EBUSY:
        h->error(req, CHATD_ERR_UNAVAILABLE, "storage unavailable, retry later");
        break;
    default:
        h->error(req, CHATD_ERR_INTERNAL, "storage job failed");
    }
}

struct bucket {
    double tokens;
    int64_t ms;
};

struct util_buckets {
    const chatd_host *h;
    chatd_map *keys;
    double rate, burst;
    int64_t last_sweep_ms;
};

struct util_buckets *util_buckets_new(const chatd_host *h, int64_t rate, int64_t burst)
{
    if (!CHATD_HOST_HAS(h, map_sweep))
        return NULL; /* a host older than ABI 1.1 */
    struct util_buckets *b = calloc(1, sizeof *b);
    if (!b || !(b->keys = h->map_new(0))) {
        free(b);
        return NULL;
    }
    b->h = h;
    b->rate = (double)rate;
    b->burst = (double)burst;
    return b;
}

static int drop_always(int64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key, (void)arg;
    free(value);
    return 1;
}

void util_buckets_free(struct util_buckets *b)
{
    if (!b)
        return;
    b->h->map_sweep(b->keys, drop_always, NULL);
    b->h->map_free(b->keys);
    free(b);
}

struct sweep_at {
    int64_t now, full_after;
};

static int drop_if_full(int64_t id, const char *key, void *value, void *arg)
{
    struct sweep_at *at = arg;
    (void)id, (void)key;
    if (at->now - ((struct bucket *)value)->ms < at->full_after)
        return 0;
    free(value);
    return 1;
}

/* A bucket refilled to full holds no information: drop it. */
static void buckets_sweep(struct util_buckets *b, int64_t now)
{
    struct sweep_at at = {now, (int64_t)(1000.0 * b->burst / b->rate) + 1000};
    if (now - b->last_sweep_ms < at.full_after)
        return;
    b->last_sweep_ms = now;
    b->h->map_sweep(b->keys, drop_if_full, &at);
}

int util_buckets_take(struct util_buckets *b, int64_t key, int64_t now_ms)
{
    buckets_sweep(b, now_ms);
    struct bucket *k = b->h->map_get(b->keys, key, NULL);
    if (!k) {
        if (!(k = calloc(1, sizeof *k)) || b->h->map_put(b->keys, key, NULL, k) < 0) {
            free(k);
            return 1; /* out of memory is no reason to refuse a user */
        }
        k->tokens = b->burst; /* a new bucket is full */
        k->ms = now_ms;
    }
    return chatd_bucket_take(&k->tokens, &k->ms, b->rate, b->burst, now_ms);
}
