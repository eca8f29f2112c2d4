/*
 * From events to outbox rows. A change that pushes (a message) writes a
 * push intent in its own transaction; once the nodes have decided who was
 * absent, the core tells this plugin one UNDELIVERABLE per absent user
 * (carrying the intent's ref) and then PUSH_SETTLED. On that, one write job
 * turns the users gathered into push_outbox rows (with each user's devices)
 * and deletes the intent, so either both are stored or neither. An intent
 * that is still there recover_after_ms after it was written belongs to a
 * node that died before settling it: any node turns it into rows for every
 * member but the author (a push too many rather than one lost). Outbox rows
 * whose owner's lease ran out (on SQLite: rows of any earlier process) are
 * adopted the same way.
 *
 * A row's id is "p<intent>-u<user>", the same whoever writes it, so the
 * receiver can deduplicate; events without an intent get a random id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"

#define RECOVER_BATCH 200

struct target {
    char id[PUSH_ID_MAX];
    int64_t user_id;
    char username[UTIL_NAME_MAX];
    json_t *event;
};

/* The users gathered for one intent (ref 0: events without one). */
struct gathered {
    int64_t ref;
    struct target *t;
    size_t n, cap;
    struct gathered *next;
};

struct intents {
    struct pplug *pp;
    chatd_map *open; /* ref -> struct gathered, until settled */
    struct gathered *ready, **ready_tail;
    struct gathered *loose; /* UNDELIVERABLE without an intent, waiting for the next store */
    int storing, store_armed;
    int recovered; /* the start-up recovery of this process is over (all its batches) */
};

static void gathered_free(struct gathered *g)
{
    for (size_t i = 0; g && i < g->n; i++)
        json_decref(g->t[i].event);
    if (g)
        free(g->t);
    free(g);
}

static int gathered_add(struct gathered *g, const char *id, int64_t user_id, const char *username,
                        const json_t *event)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct target *t = realloc(g->t, cap * sizeof *t);
        if (!t)
            return CHATD_ENOMEM;
        g->t = t;
        g->cap = cap;
    }
    struct target *t = &g->t[g->n++];
    snprintf(t->id, sizeof t->id, "%s", id);
    t->user_id = user_id;
    snprintf(t->username, sizeof t->username, "%s", username ? username : "");
    t->event = json_incref((json_t *)event);
    return 0;
}

/* ---- rows ---- */

/* The JSON delivered for one target, devices included (worker thread with
 * db; on the loop without a store, devices empty). */
static char *body_of(const chatd_host *h, chatd_db *db, const struct target *t)
{
    json_t *devices = db ? devices_of(h, db, t->user_id) : json_array();
    json_t *b = json_pack("{s:s, s:I, s:s, s:o, s:O}", "id", t->id, "userId",
                          (json_int_t)t->user_id, "username", t->username, "devices",
                          devices ? devices : json_array(), "event", t->event);
    char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    return text;
}

struct rows {
    struct push_item **v;
    size_t n, cap;
};

static int rows_add(struct rows *r, struct push_item *it)
{
    if (!it)
        return CHATD_ENOMEM;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct push_item **v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            push_item_free(it);
            return CHATD_ENOMEM;
        }
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = it;
    return 0;
}

static void rows_clear(struct rows *r)
{
    for (size_t i = 0; i < r->n; i++)
        push_item_free(r->v[i]);
    r->n = 0;
}

/* Insert one row owned by this node unless a row of that id is there; the
 * item to deliver when it went in. */
static int row_insert(struct pplug *pp, chatd_db *db, const struct target *t, int64_t now,
                      struct rows *out)
{
    const chatd_host *h = pp->host;
    char *body = body_of(h, db, t);
    if (!body)
        return CHATD_ENOMEM;
    const char *sql = strcmp(h->db_dialect(db), "sqlite") == 0
                          ? "INSERT OR IGNORE INTO push_outbox (id, user_id, body, created_at,"
                            " owner, lease_until) VALUES (?, ?, ?, ?, ?, ?)"
                          : "INSERT IGNORE INTO push_outbox (id, user_id, body, created_at,"
                            " owner, lease_until) VALUES (?, ?, ?, ?, ?, ?)";
    int rc = util_exec(h, db, sql, "sisisi", t->id, t->user_id, body, now, pp->node,
                       now + pp->set.lease_ms);
    if (rc < 0 || h->db_changes(db) != 1) {
        free(body);
        return rc;
    }
    return rows_add(out, push_item_new(t->id, t->user_id, body, now));
}

/* ---- settling: gathered users -> rows, intent deleted ---- */

struct store_job {
    struct intents *in;
    struct gathered *list; /* settled intents, and the loose events */
    struct rows rows;
};

#define DELETE_CHUNK 32

/* Delete the settled intents, DELETE_CHUNK to a statement (a short chunk
 * repeats its last id): most messages push to nobody, and their intents
 * should cost one statement for many. In id order: the nodes that settle
 * one intent each delete it, and two that took their rows in different
 * orders would deadlock. */
static int delete_intents(const chatd_host *h, chatd_db *db, const struct gathered *list)
{
    static const char *sql = "DELETE FROM push_intent WHERE id IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                             " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    size_t n = 0;
    for (const struct gathered *g = list; g; g = g->next)
        n += g->ref != 0;
    if (!n)
        return 0;
    int64_t *ids = malloc(n * sizeof *ids);
    if (!ids)
        return CHATD_ENOMEM;
    n = 0;
    for (const struct gathered *g = list; g; g = g->next)
        if (g->ref)
            ids[n++] = g->ref;
    qsort(ids, n, sizeof *ids, util_cmp_i64);
    int rc = 0;
    for (size_t from = 0; rc == 0 && from < n; from += DELETE_CHUNK) {
        size_t k = n - from < DELETE_CHUNK ? n - from : DELETE_CHUNK;
        chatd_stmt *st = h->db_prepare(db, sql);
        for (size_t i = 0; st && i < DELETE_CHUNK; i++)
            h->db_bind_int(st, (int)i + 1, ids[from + (i < k ? i : k - 1)]);
        rc = st ? h->db_step(st) : CHATD_EINTERNAL;
        if (st)
            h->db_reset(st);
        rc = rc == CHATD_DONE ? 0 : rc < 0 ? rc : CHATD_EINTERNAL;
    }
    free(ids);
    return rc;
}

static int store_run(chatd_db *db, void *arg)
{
    struct store_job *j = arg;
    struct pplug *pp = j->in->pp;
    const chatd_host *h = pp->host;
    int64_t now = h->now_ms();
    rows_clear(&j->rows); /* run again after a conflict: start afresh */
    int rc = 0;
    for (struct gathered *g = j->list; rc == 0 && g; g = g->next)
        for (size_t i = 0; rc == 0 && i < g->n; i++)
            rc = row_insert(pp, db, &g->t[i], now, &j->rows);
    return rc < 0 ? rc : delete_intents(h, db, j->list);
}

static void store_now(void *arg);

/* Without a stored outbox (or when storing failed): deliver from memory. */
static void deliver_unstored(struct intents *in, struct gathered *list)
{
    const chatd_host *h = in->pp->host;
    for (struct gathered *g = list; g; g = g->next)
        for (size_t i = 0; i < g->n; i++) {
            char *body = body_of(h, NULL, &g->t[i]);
            struct push_item *it =
                body ? push_item_new(g->t[i].id, g->t[i].user_id, body, h->now_ms()) : NULL;
            if (it)
                queue_add(in->pp->queue, it);
        }
}

static void list_free(struct gathered *list)
{
    while (list) {
        struct gathered *next = list->next;
        gathered_free(list);
        list = next;
    }
}

static void store_done(void *arg, int status)
{
    struct store_job *j = arg;
    struct intents *in = j->in;
    in->storing = 0;
    if (status < 0) {
        in->pp->host->log(in->pp->p, CHATD_LOG_WARN,
                          "push outbox not written (storage unavailable): delivering from memory");
        rows_clear(&j->rows);
        deliver_unstored(in, j->list);
    }
    for (size_t i = 0; i < j->rows.n; i++)
        queue_add(in->pp->queue, j->rows.v[i]);
    free(j->rows.v);
    list_free(j->list);
    free(j);
    if ((in->ready || in->loose) && !in->store_armed &&
        in->pp->host->after(in->pp->p, 0, store_now, in) == 0)
        in->store_armed = 1;
}

/* Hand everything settled (and the loose events) to one write job. */
static void store_now(void *arg)
{
    struct intents *in = arg;
    in->store_armed = 0;
    if (in->storing || (!in->ready && !in->loose))
        return;
    struct gathered *list = in->ready;
    if (in->loose) {
        in->loose->next = list;
        list = in->loose;
    }
    in->ready = in->loose = NULL;
    in->ready_tail = &in->ready;
    if (!in->pp->durable) {
        deliver_unstored(in, list);
        list_free(list);
        return;
    }
    struct store_job *j = calloc(1, sizeof *j);
    if (!j) {
        deliver_unstored(in, list);
        list_free(list);
        return;
    }
    j->in = in;
    j->list = list;
    in->storing = 1;
    if (in->pp->host->submit(in->pp->p, CHATD_JOB_WRITE | CHATD_JOB_UNORDERED, store_run,
                             store_done, j) < 0)
        store_done(j, CHATD_EINTERNAL);
}

static void arm_store(struct intents *in)
{
    if (!in->store_armed && !in->storing && in->pp->host->after(in->pp->p, 0, store_now, in) == 0)
        in->store_armed = 1;
}

void intents_undeliverable(struct intents *in, const chatd_event *ev)
{
    const chatd_host *h = in->pp->host;
    char id[PUSH_ID_MAX];
    struct gathered *g;
    if (ev->push_ref) {
        snprintf(id, sizeof id, "p%lld-u%lld", (long long)ev->push_ref, (long long)ev->user_id);
        g = h->map_get(in->open, ev->push_ref, NULL);
        if (!g && (g = calloc(1, sizeof *g))) {
            g->ref = ev->push_ref;
            if (h->map_put(in->open, g->ref, NULL, g) < 0) {
                free(g);
                g = NULL;
            }
        }
    } else {
        push_random_name(h, "r", id, sizeof id);
        g = in->loose ? in->loose : (in->loose = calloc(1, sizeof *in->loose));
        arm_store(in);
    }
    if (!g || gathered_add(g, id, ev->user_id, ev->username, ev->body) < 0)
        h->log(in->pp->p, CHATD_LOG_ERROR, "out of memory: push for user %lld %s",
               (long long)ev->user_id, ev->push_ref ? "left to recovery" : "lost");
}

void intents_settled(struct intents *in, int64_t ref)
{
    const chatd_host *h = in->pp->host;
    struct gathered *g = h->map_del(in->open, ref, NULL);
    if (!g && !(g = calloc(1, sizeof *g)))
        return; /* the intent stays stored: recovered later */
    g->ref = ref;
    *in->ready_tail = g;
    in->ready_tail = &g->next;
    arm_store(in);
}

/* ---- recovery: intents and rows that dead nodes left ---- */

struct recover_job {
    struct intents *in;
    int64_t now;
    int startup;      /* the first run of this process */
    int more;         /* a batch was full: run again soon */
    struct rows rows; /* adopted or made: this node delivers them */
};

/* An intent's recipients: the channel's members but the author, or the user. */
static int expand_intent(struct pplug *pp, chatd_db *db, int64_t ref, int64_t channel_id,
                         int64_t user_id, int64_t except, const char *event_text, struct rows *out,
                         int64_t now)
{
    const chatd_host *h = pp->host;
    json_t *event = json_loads(event_text, 0, NULL);
    if (!event)
        return util_exec(h, db, "DELETE FROM push_intent WHERE id = ?", "i", ref);
    chatd_stmt *st =
        channel_id
            ? util_bind(h, db,
                        "SELECT u.id, u.username FROM channel_user cu"
                        " JOIN message_user u ON u.id = cu.user_id"
                        " WHERE cu.channel_id = ? AND cu.user_id <> ?",
                        "ii", channel_id, except)
            : util_bind(h, db, "SELECT id, username FROM message_user WHERE id = ?", "i", user_id);
    struct gathered g = {.ref = ref};
    int rc = st ? 0 : CHATD_EINTERNAL;
    while (rc == 0 && (rc = h->db_step(st)) == CHATD_ROW) {
        char id[PUSH_ID_MAX];
        int64_t uid = h->db_column_int(st, 0);
        snprintf(id, sizeof id, "p%lld-u%lld", (long long)ref, (long long)uid);
        rc = gathered_add(&g, id, uid, h->db_column_text(st, 1, NULL), event);
    }
    if (st)
        h->db_reset(st);
    json_decref(event);
    rc = rc == CHATD_DONE ? 0 : rc;
    for (size_t i = 0; rc == 0 && i < g.n; i++)
        rc = row_insert(pp, db, &g.t[i], now, out);
    for (size_t i = 0; i < g.n; i++)
        json_decref(g.t[i].event);
    free(g.t);
    return rc < 0 ? rc : util_exec(h, db, "DELETE FROM push_intent WHERE id = ?", "i", ref);
}

static int recover_intents(struct recover_job *j, chatd_db *db)
{
    struct pplug *pp = j->in->pp;
    const chatd_host *h = pp->host;
    int sqlite = strcmp(h->db_dialect(db), "sqlite") == 0;
    chatd_stmt *st = util_bind(h, db,
                               sqlite ? "SELECT id, channel_id, user_id, except_user, event"
                                        " FROM push_intent WHERE created_at <= ? ORDER BY id"
                                        " LIMIT 200"
                                      : "SELECT id, channel_id, user_id, except_user, event"
                                        " FROM push_intent WHERE created_at <= ? ORDER BY id"
                                        " LIMIT 200 FOR UPDATE SKIP LOCKED",
                               "i", j->now - pp->set.recover_after_ms);
    if (!st)
        return CHATD_EINTERNAL;
    struct found {
        int64_t ref, channel_id, user_id, except;
        char *event;
    } *f = calloc(RECOVER_BATCH, sizeof *f);
    size_t n = 0;
    int rc = f ? 0 : CHATD_ENOMEM;
    while (rc == 0 && n < RECOVER_BATCH && (rc = h->db_step(st)) == CHATD_ROW) {
        f[n] = (struct found){h->db_column_int(st, 0), h->db_column_int(st, 1),
                              h->db_column_int(st, 2), h->db_column_int(st, 3),
                              strdup(h->db_column_text(st, 4, NULL))};
        rc = f[n++].event ? 0 : CHATD_ENOMEM;
    }
    h->db_reset(st);
    rc = rc == CHATD_DONE ? 0 : rc;
    j->more |= n == RECOVER_BATCH;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = expand_intent(pp, db, f[i].ref, f[i].channel_id, f[i].user_id, f[i].except, f[i].event,
                           &j->rows, j->now);
    for (size_t i = 0; i < n; i++)
        free(f[i].event);
    free(f);
    return rc;
}

/* Rows whose deliverer is gone: on SQLite (one node) every row of another
 * process; with several nodes, rows whose lease ran out. */
static int adopt_rows(struct recover_job *j, chatd_db *db)
{
    struct pplug *pp = j->in->pp;
    const chatd_host *h = pp->host;
    int sqlite = strcmp(h->db_dialect(db), "sqlite") == 0;
    chatd_stmt *st = util_bind(
        h, db,
        sqlite ? "SELECT id, user_id, body, attempts, next_at, created_at FROM push_outbox"
                 " WHERE dead = 0 AND (owner IS NULL OR owner <> ?) AND (? OR lease_until < ?)"
                 " ORDER BY created_at LIMIT 200"
               : "SELECT id, user_id, body, attempts, next_at, created_at FROM push_outbox"
                 " WHERE dead = 0 AND (owner IS NULL OR owner <> ?) AND (? OR lease_until < ?)"
                 " ORDER BY created_at LIMIT 200 FOR UPDATE SKIP LOCKED",
        "sii", pp->node, (int64_t)(sqlite && j->startup), j->now);
    if (!st)
        return CHATD_EINTERNAL;
    int rc;
    size_t n = 0;
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        struct push_item *it =
            push_item_new(h->db_column_text(st, 0, NULL), h->db_column_int(st, 1),
                          strdup(h->db_column_text(st, 2, NULL)), h->db_column_int(st, 5));
        if (it && !it->body) {
            push_item_free(it);
            it = NULL;
        }
        if (it) {
            it->attempts = (int)h->db_column_int(st, 3);
            it->next_at = h->db_column_int(st, 4);
        }
        if ((rc = rows_add(&j->rows, it)) < 0)
            break;
        n++;
    }
    h->db_reset(st);
    if (rc < 0 && rc != CHATD_DONE)
        return rc;
    j->more |= n == RECOVER_BATCH;
    for (size_t i = j->rows.n - n; i < j->rows.n; i++)
        if ((rc = util_exec(h, db, "UPDATE push_outbox SET owner = ?, lease_until = ? WHERE id = ?",
                            "sis", pp->node, j->now + pp->set.lease_ms, j->rows.v[i]->id)) < 0)
            return rc;
    return 0;
}

static int recover_run(chatd_db *db, void *arg)
{
    struct recover_job *j = arg;
    rows_clear(&j->rows);
    j->more = 0;
    j->now = j->in->pp->host->now_ms();
    int rc = adopt_rows(j, db);
    return rc < 0 ? rc : recover_intents(j, db);
}

static void recover(void *arg);

static void recover_done(void *arg, int status)
{
    struct recover_job *j = arg;
    struct intents *in = j->in;
    const chatd_host *h = in->pp->host;
    if (status < 0)
        rows_clear(&j->rows); /* tried again at the next round */
    if (j->rows.n)
        h->log(in->pp->p, CHATD_LOG_INFO, "took over %zu notifications left undelivered",
               j->rows.n);
    for (size_t i = 0; i < j->rows.n; i++)
        queue_add(in->pp->queue, j->rows.v[i]);
    int64_t again = j->more && status >= 0 ? 0 : in->pp->set.recover_after_ms / 2;
    if (status >= 0 && !j->more)
        in->recovered = 1; /* every row of the earlier processes taken over */
    free(j->rows.v);
    free(j);
    if (!in->pp->closing)
        h->after(in->pp->p, again, recover, in);
}

static void recover(void *arg)
{
    struct intents *in = arg;
    struct recover_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->in = in;
    j->startup = !in->recovered;
    if (in->pp->host->submit(in->pp->p, CHATD_JOB_WRITE, recover_run, recover_done, j) < 0)
        recover_done(j, CHATD_EINTERNAL);
}

/* ---- the whole ---- */

struct intents *intents_new(struct pplug *pp)
{
    struct intents *in = calloc(1, sizeof *in);
    if (!in || !(in->open = pp->host->map_new(0))) {
        free(in);
        return NULL;
    }
    in->pp = pp;
    in->ready_tail = &in->ready;
    if (pp->durable)
        pp->host->after(pp->p, 0, recover, in);
    return in;
}

static int drop_open(int64_t id, const char *key, void *value, void *arg)
{
    (void)id, (void)key, (void)arg;
    gathered_free(value);
    return 1;
}

void intents_free(struct intents *in)
{
    if (!in)
        return;
    in->pp->host->map_sweep(in->open, drop_open, NULL);
    in->pp->host->map_free(in->open);
    list_free(in->ready);
    list_free(in->loose);
    free(in);
}
