/* WRITE_MESSAGE for the consecutive writes of a write batch at once
 * (host->job_batch): the checks and rows of mstore_write, each statement for
 * up to BATCH_ROWS of them where mstore_write takes five per message. */
#include <stdlib.h>
#include <string.h>

#include "messaging.h"

#define BATCH_ROWS 64 /* items of one statement, at most */

struct chan {
    int64_t id, db_last_seq, last_seq, version, member_version;
    int found, changed;
};

struct pair {
    int64_t channel_id, user_id, marker; /* marker: the writer's last seq here, or 0 */
    int member;
};

/* What the batch knows of each job. */
struct aux {
    struct chan *c;
    struct pair *p;
    int reply_found; /* its replyTo is a stored message */
};

struct wbatch {
    const chatd_host *h;
    chatd_db *db;
    struct mjob **j;
    int *status;
    struct aux *a;
    size_t n;
    struct chan *ch;
    size_t nch;
    struct pair *pr;
    size_t npr;
};

/* SQL text of one statement: a head, k items joined by sep, a tail. */
struct sql {
    char s[8192];
    size_t len;
};

static int sql_add(struct sql *q, const char *text)
{
    size_t l = strlen(text);
    if (q->len + l >= sizeof q->s)
        return CHATD_EINTERNAL;
    memcpy(q->s + q->len, text, l + 1);
    q->len += l;
    return 0;
}

static int sql_list(struct sql *q, const char *item, const char *sep, size_t k)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < k; i++)
        rc = (i ? sql_add(q, sep) : 0) < 0 ? CHATD_EINTERNAL : sql_add(q, item);
    return rc;
}

/* Statements of k items, padded (with the last item again) to a power of
 * two, so that a connection prepares a few shapes of each. */
static size_t padded(size_t k)
{
    size_t p = 1;
    while (p < k)
        p <<= 1;
    return p;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_pair(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    int c = cmp_i64(&x->channel_id, &y->channel_id);
    return c ? c : cmp_i64(&x->user_id, &y->user_id);
}

static struct chan *chan_of(struct wbatch *w, int64_t id)
{
    struct chan key = {.id = id};
    return bsearch(&key, w->ch, w->nch, sizeof *w->ch, cmp_i64);
}

static struct pair *pair_of(struct wbatch *w, int64_t channel_id, int64_t user_id)
{
    struct pair key = {.channel_id = channel_id, .user_id = user_id};
    return bsearch(&key, w->pr, w->npr, sizeof *w->pr, cmp_pair);
}

/* The distinct channels and (channel, writer) pairs, sorted. */
static int collect(struct wbatch *w)
{
    w->ch = calloc(w->n, sizeof *w->ch);
    w->pr = calloc(w->n, sizeof *w->pr);
    if (!w->ch || !w->pr)
        return CHATD_ENOMEM;
    for (size_t i = 0; i < w->n; i++) {
        w->ch[i].id = w->j[i]->channel_id;
        w->pr[i] = (struct pair){w->j[i]->channel_id, w->j[i]->me, 0, 0};
    }
    qsort(w->ch, w->n, sizeof *w->ch, cmp_i64);
    qsort(w->pr, w->n, sizeof *w->pr, cmp_pair);
    w->nch = w->npr = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (!w->nch || w->ch[w->nch - 1].id != w->ch[i].id)
            w->ch[w->nch++] = w->ch[i];
        if (!w->npr || cmp_pair(&w->pr[w->npr - 1], &w->pr[i]))
            w->pr[w->npr++] = w->pr[i];
    }
    for (size_t i = 0; i < w->n; i++) {
        w->a[i].c = chan_of(w, w->j[i]->channel_id);
        w->a[i].p = pair_of(w, w->j[i]->channel_id, w->j[i]->me);
    }
    return 0;
}

/*
 * The shape of a statement over items: up to three sections, each a text
 * and an item's text repeated (joined by sep), then a tail. bind() binds
 * one item's parameters of a section from idx on and returns how many.
 */
struct shape {
    struct {
        const char *text, *item, *sep;
    } sec[3];
    const char *tail;
    int pad; /* repeat the last item up to a power of two; else 64, 32, ... rows */
    int (*bind)(struct wbatch *w, chatd_stmt *st, size_t item, int section, int idx);
    void (*row)(struct wbatch *w, chatd_stmt *st, const size_t *items, size_t k);
};

static int build(struct sql *q, const struct shape *s, size_t k, const char *extra)
{
    q->len = 0;
    q->s[0] = '\0';
    for (int x = 0; x < 3 && s->sec[x].text; x++)
        if (sql_add(q, s->sec[x].text) < 0 || sql_list(q, s->sec[x].item, s->sec[x].sep, k) < 0)
            return CHATD_EINTERNAL;
    return sql_add(q, s->tail) < 0 || sql_add(q, extra) < 0 ? CHATD_EINTERNAL : 0;
}

/* Run s over items[0..k) (indexes the callbacks understand), in chunks. */
static int run_items(struct wbatch *w, const struct shape *s, const size_t *items, size_t k,
                     const char *extra)
{
    const chatd_host *h = w->h;
    struct sql q;
    for (size_t from = 0, m = BATCH_ROWS; from < k; from += m) {
        if (s->pad)
            m = k - from < BATCH_ROWS ? k - from : BATCH_ROWS;
        else
            while (m > k - from)
                m >>= 1;
        size_t pm = s->pad ? padded(m) : m;
        if (build(&q, s, pm, extra) < 0)
            return CHATD_EINTERNAL;
        chatd_stmt *st = h->db_prepare(w->db, q.s);
        int rc = st ? 0 : CHATD_EINTERNAL, idx = 1;
        for (int x = 0; rc == 0 && x < 3 && s->sec[x].text; x++)
            for (size_t i = 0; rc == 0 && i < pm; i++) {
                int b = s->bind(w, st, items[from + (i < m ? i : m - 1)], x, idx);
                rc = b < 0 ? b : 0;
                idx += b;
            }
        while (rc == 0 && (rc = h->db_step(st)) == CHATD_ROW) {
            if (s->row)
                s->row(w, st, items + from, m);
            rc = 0;
        }
        if (st)
            h->db_reset(st);
        if (rc != CHATD_DONE)
            return rc < 0 ? rc : CHATD_EINTERNAL;
    }
    return 0;
}

static int bind_ints(const chatd_host *h, chatd_stmt *st, int idx, int n, const int64_t *v)
{
    for (int i = 0; i < n; i++)
        if (h->db_bind_int(st, idx + i, v[i]) < 0)
            return CHATD_EINTERNAL;
    return n;
}

/* ---- the channels' rows, locked in id order ---- */

static int bind_chan(struct wbatch *w, chatd_stmt *st, size_t i, int section, int idx)
{
    const struct chan *c = &w->ch[i];
    int64_t v[2] = {c->id, section == 0 ? c->version : c->last_seq};
    return bind_ints(w->h, st, idx, section < 2 ? 2 : 1, v);
}

static int bind_chan_id(struct wbatch *w, chatd_stmt *st, size_t i, int section, int idx)
{
    (void)section;
    return bind_ints(w->h, st, idx, 1, &w->ch[i].id);
}

static void row_chan(struct wbatch *w, chatd_stmt *st, const size_t *items, size_t k)
{
    (void)items, (void)k;
    struct chan *c = chan_of(w, w->h->db_column_int(st, 0));
    if (!c)
        return;
    c->found = 1;
    c->db_last_seq = c->last_seq = w->h->db_column_int(st, 1);
    c->member_version = w->h->db_column_int(st, 2);
    c->version = w->h->db_column_int(st, 3);
}

static const struct shape lock_channels = {
    {{"SELECT id, last_msg_seq, member_version, version FROM channel WHERE id IN (", "?", ", "}},
    ") ORDER BY id",
    1,
    bind_chan_id,
    row_chan,
};

static const struct shape update_channels = {
    {{"UPDATE channel SET version = CASE id ", "WHEN ? THEN ?", " "},
     {" END, last_msg_seq = CASE id ", "WHEN ? THEN ?", " "},
     {" END WHERE id IN (", "?", ", "}},
    ")",
    1,
    bind_chan,
    NULL,
};

/* ---- the writers' memberships and read markers ---- */

static int bind_pair(struct wbatch *w, chatd_stmt *st, size_t i, int section, int idx)
{
    (void)section;
    int64_t v[2] = {w->pr[i].channel_id, w->pr[i].user_id};
    return bind_ints(w->h, st, idx, 2, v);
}

static int bind_marker(struct wbatch *w, chatd_stmt *st, size_t i, int section, int idx)
{
    const struct pair *p = &w->pr[i];
    int64_t v[3] = {p->channel_id, p->user_id, p->marker};
    return bind_ints(w->h, st, idx, section == 0 ? 3 : 2, v);
}

static void row_member(struct wbatch *w, chatd_stmt *st, const size_t *items, size_t k)
{
    (void)items, (void)k;
    struct pair *p = pair_of(w, w->h->db_column_int(st, 0), w->h->db_column_int(st, 1));
    if (p)
        p->member = 1;
}

static const struct shape load_members_of = {
    {{"SELECT channel_id, user_id FROM channel_user WHERE ", "(channel_id = ? AND user_id = ?)",
      " OR "}},
    "",
    1,
    bind_pair,
    row_member,
};

/* GREATEST is MAX on SQLite: a marker only moves forward. */
static const struct shape update_markers[2] = {
    {{{"UPDATE channel_user SET last_read_msg_seq = GREATEST(last_read_msg_seq, CASE ",
       "WHEN channel_id = ? AND user_id = ? THEN ?", " "},
      {" ELSE 0 END) WHERE ", "(channel_id = ? AND user_id = ?)", " OR "}},
     "",
     1,
     bind_marker,
     NULL},
    {{{"UPDATE channel_user SET last_read_msg_seq = MAX(last_read_msg_seq, CASE ",
       "WHEN channel_id = ? AND user_id = ? THEN ?", " "},
      {" ELSE 0 END) WHERE ", "(channel_id = ? AND user_id = ?)", " OR "}},
     "",
     1,
     bind_marker,
     NULL},
};

/* ---- retries, replies, the new messages ---- */

static int bind_retry(struct wbatch *w, chatd_stmt *st, size_t i, int section, int idx)
{
    (void)section;
    const struct mjob *j = w->j[i];
    int64_t v[2] = {j->channel_id, j->me};
    if (bind_ints(w->h, st, idx, 2, v) < 0 ||
        w->h->db_bind_text(st, idx + 2, j->client_id, strlen(j->client_id)) < 0)
        return CHATD_EINTERNAL;
    return 3;
}

static void row_retry(struct wbatch *w, chatd_stmt *st, const size_t *items, size_t k)
{
    const chatd_host *h = w->h;
    int64_t channel = h->db_column_int(st, 0), user = h->db_column_int(st, 1);
    const char *cid = h->db_column_text(st, 2, NULL);
    for (size_t i = 0; cid && i < k; i++) {
        struct mjob *j = w->j[items[i]];
        if (j->channel_id != channel || j->me != user || strcmp(j->client_id, cid) != 0)
            continue;
        j->duplicate = 1;
        j->seq = h->db_column_int(st, 3);
        j->created_ms = h->db_column_int(st, 4);
        j->version = h->db_column_int(st, 5);
        j->reply_to = h->db_column_is_null(st, 6) ? 0 : h->db_column_int(st, 6);
    }
}

static const struct shape find_retries = {
    {{"SELECT channel_id, user_id, client_message_id, seq, created_at, version, reply_to"
      " FROM message WHERE ",
      "(channel_id = ? AND user_id = ? AND client_message_id = ?)", " OR "}},
    "",
    1,
    bind_retry,
    row_retry,
};

static int bind_reply(struct wbatch *w, chatd_stmt *st, size_t i, int section, int idx)
{
    (void)section;
    int64_t v[2] = {w->j[i]->channel_id, w->j[i]->reply_to};
    return bind_ints(w->h, st, idx, 2, v);
}

static void row_reply(struct wbatch *w, chatd_stmt *st, const size_t *items, size_t k)
{
    int64_t channel = w->h->db_column_int(st, 0), seq = w->h->db_column_int(st, 1);
    for (size_t i = 0; i < k; i++)
        if (w->j[items[i]]->channel_id == channel && w->j[items[i]]->reply_to == seq)
            w->a[items[i]].reply_found = 1;
}

static const struct shape check_replies = {
    {{"SELECT channel_id, seq FROM message WHERE ", "(channel_id = ? AND seq = ?)", " OR "}},
    "",
    1,
    bind_reply,
    row_reply,
};

static int bind_message(struct wbatch *w, chatd_stmt *st, size_t i, int section, int idx)
{
    (void)section;
    const chatd_host *h = w->h;
    const struct mjob *j = w->j[i];
    int64_t v[3] = {j->channel_id, j->seq, j->me}, t[2] = {j->created_ms, j->version};
    if (bind_ints(h, st, idx, 3, v) < 0 ||
        h->db_bind_text(st, idx + 3, j->content, strlen(j->content)) < 0 ||
        (j->has_client_id ? h->db_bind_text(st, idx + 4, j->client_id, strlen(j->client_id))
                          : h->db_bind_null(st, idx + 4)) < 0 ||
        bind_ints(h, st, idx + 5, 2, t) < 0 ||
        (j->reply_to ? h->db_bind_int(st, idx + 7, j->reply_to) : h->db_bind_null(st, idx + 7)) < 0)
        return CHATD_EINTERNAL;
    return 8;
}

static const struct shape insert_messages = {
    {{"INSERT INTO message (channel_id, seq, user_id, content, client_message_id, created_at,"
      " version, reply_to) VALUES ",
      "(?, ?, ?, ?, ?, ?, ?, ?)", ", "}},
    "",
    0,
    bind_message,
    NULL,
};

/* ---- the batch ---- */

/* The jobs still going (status 0, not a retry) that pass want(). */
static size_t pick(struct wbatch *w, size_t *items, int (*want)(struct wbatch *w, size_t i))
{
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++)
        if (w->status[i] == 0 && !w->j[i]->duplicate && (!want || want(w, i)))
            items[k++] = i;
    return k;
}

static int wants_retry_check(struct wbatch *w, size_t i)
{
    return w->j[i]->has_client_id;
}

static int wants_reply_check(struct wbatch *w, size_t i)
{
    return w->j[i]->reply_to > 0 && w->j[i]->reply_to <= w->a[i].c->db_last_seq;
}

/* An earlier write of this batch with the same clientMessageId: this one is
 * its retry, with its results. */
static int retry_in_batch(struct wbatch *w, size_t i)
{
    struct mjob *j = w->j[i];
    for (size_t e = 0; j->has_client_id && e < i; e++) {
        const struct mjob *o = w->j[e];
        if (w->status[e] == 0 && o->has_client_id && o->channel_id == j->channel_id &&
            o->me == j->me && strcmp(o->client_id, j->client_id) == 0) {
            j->duplicate = 1;
            j->seq = o->seq;
            j->created_ms = o->created_ms;
            j->version = o->version;
            j->reply_to = o->reply_to;
            return 1;
        }
    }
    return 0;
}

/* Membership, then sequences and versions in the batch's order (a channel's
 * writes keep their order). */
static void assign(struct wbatch *w)
{
    int64_t now = w->h->now_ms();
    for (size_t i = 0; i < w->n; i++) {
        struct mjob *j = w->j[i];
        struct aux *a = &w->a[i];
        if (w->status[i] != 0 || j->duplicate || retry_in_batch(w, i))
            continue;
        if (j->reply_to &&
            !(j->reply_to <= a->c->db_last_seq ? a->reply_found : j->reply_to <= a->c->last_seq)) {
            j->problem = "replyTo names no message of this channel";
            w->status[i] = CHATD_ENOTFOUND;
            continue;
        }
        j->seq = ++a->c->last_seq;
        j->version = ++a->c->version;
        a->c->changed = 1;
        a->p->marker = j->seq;
        j->created_ms = now;
    }
}

/* The members for push and the notes, as mstore_write makes them, and the
 * push intents of them all in one call. */
static int store_intents(struct wbatch *w, size_t *items)
{
    const chatd_host *h = w->h;
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) {
        struct mjob *j = w->j[i];
        if (w->status[i] != 0 || j->duplicate)
            continue;
        int rc = mstore_write_note(j, w->db, w->a[i].c->member_version);
        if (rc < 0)
            return rc;
        if (rc > 0)
            items[k++] = i;
    }
    if (!k)
        return 0;
    chatd_intent *in = calloc(k, sizeof *in);
    int64_t *refs = calloc(k, sizeof *refs);
    int rc = in && refs ? 0 : CHATD_ENOMEM;
    for (size_t x = 0; rc == 0 && x < k; x++) {
        const struct mjob *j = w->j[items[x]];
        in[x] = (chatd_intent){j->channel_id, 0, j->me, "NOTIFY_MESSAGE", j->note};
    }
    if (rc == 0 && CHATD_HOST_HAS(h, push_intents))
        rc = h->push_intents(w->db, in, k, refs);
    for (size_t x = 0; rc == 0 && x < k && !CHATD_HOST_HAS(h, push_intents); x++) {
        refs[x] =
            h->push_intent(w->db, in[x].channel_id, 0, in[x].except_user, in[x].type, in[x].body);
        rc = refs[x] < 0 ? (int)refs[x] : 0;
    }
    for (size_t x = 0; rc == 0 && x < k; x++)
        w->j[items[x]]->push_ref = refs[x];
    free(in);
    free(refs);
    return rc;
}

static int run_batch(struct wbatch *w, size_t *items)
{
    const char *lock = util_for_update(w->h, w->db);
    int rc = collect(w);
    size_t k;
    if (rc == 0) {
        for (k = 0; k < w->nch; k++)
            items[k] = k;
        rc = run_items(w, &lock_channels, items, k, lock);
    }
    for (k = 0; rc == 0 && k < w->npr; k++)
        items[k] = k;
    if (rc == 0)
        rc = run_items(w, &load_members_of, items, w->npr, lock);
    for (size_t i = 0; rc == 0 && i < w->n; i++) {
        w->j[i]->duplicate = 0;
        w->j[i]->problem = NULL;
        w->a[i].reply_found = 0;
        w->status[i] = !w->a[i].c->found    ? CHATD_ENOTFOUND
                       : !w->a[i].p->member ? CHATD_EFORBIDDEN
                                            : 0;
    }
    if (rc == 0)
        rc = run_items(w, &find_retries, items, pick(w, items, wants_retry_check), "");
    if (rc == 0)
        rc = run_items(w, &check_replies, items, pick(w, items, wants_reply_check), "");
    if (rc < 0)
        return rc;
    assign(w);
    if ((rc = run_items(w, &insert_messages, items, pick(w, items, NULL), "")) < 0)
        return rc;
    k = 0;
    for (size_t i = 0; i < w->nch; i++)
        if (w->ch[i].changed)
            items[k++] = i;
    if ((rc = run_items(w, &update_channels, items, k, "")) < 0)
        return rc;
    k = 0;
    for (size_t i = 0; i < w->npr; i++)
        if (w->pr[i].marker)
            items[k++] = i;
    int sqlite = strcmp(w->h->db_dialect(w->db), "sqlite") == 0;
    if ((rc = run_items(w, &update_markers[sqlite], items, k, "")) < 0)
        return rc;
    return store_intents(w, items);
}

int mstore_write_batch(chatd_db *db, void *const *args, int *status, size_t n)
{
    struct wbatch w = {.db = db, .j = (struct mjob **)args, .status = status, .n = n};
    w.h = w.j[0]->mp->host;
    w.a = calloc(n, sizeof *w.a);
    size_t *items = calloc(n, sizeof *items);
    int rc = w.a && items ? run_batch(&w, items) : CHATD_ENOMEM;
    free(items);
    free(w.a);
    free(w.ch);
    free(w.pr);
    return rc;
}
