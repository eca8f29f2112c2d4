/* Statements over many rows at once (rows.h). */
#include "rows.h"

#include <stdlib.h>
#include <string.h>

#include "messaging.h"

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

static int build(struct sql *q, const struct shape *s, size_t k, const char *extra)
{
    q->len = 0;
    q->s[0] = '\0';
    for (int x = 0; x < 3 && s->sec[x].text; x++)
        if (sql_add(q, s->sec[x].text) < 0 || sql_list(q, s->sec[x].item, s->sec[x].sep, k) < 0)
            return CHATD_EINTERNAL;
    return sql_add(q, s->tail) < 0 || sql_add(q, extra) < 0 ? CHATD_EINTERNAL : 0;
}

int sql_run(struct sqlctx *x, const struct shape *s, const size_t *items, size_t k,
            const char *extra)
{
    const chatd_host *h = x->h;
    struct sql q;
    x->run_done = 0;
    for (size_t from = 0, m = ROWS_MAX; from < k; from += m) {
        if (s->pad)
            m = k - from < ROWS_MAX ? k - from : ROWS_MAX;
        else
            while (m > k - from)
                m >>= 1;
        size_t pm = s->pad ? padded(m) : m;
        if (build(&q, s, pm, extra) < 0)
            return CHATD_EINTERNAL;
        chatd_stmt *st = h->db_prepare(x->db, q.s);
        int rc = st ? 0 : CHATD_EINTERNAL, idx = 1;
        for (int sec = 0; rc == 0 && sec < 3 && s->sec[sec].text; sec++)
            for (size_t i = 0; rc == 0 && i < pm; i++) {
                int b = s->bind(x, st, items[from + (i < m ? i : m - 1)], sec, idx);
                rc = b < 0 ? b : 0;
                idx += b;
            }
        while (rc == 0 && (rc = s->later ? util_step_later(h, st) : h->db_step(st)) == CHATD_ROW) {
            if (s->row)
                s->row(x, st, items + from, m);
            rc = 0;
        }
        if (st)
            h->db_reset(st);
        if (rc != CHATD_DONE)
            return rc < 0 ? rc : CHATD_EINTERNAL;
        x->run_done = from + m;
    }
    return 0;
}

int sql_bind_ints(const chatd_host *h, chatd_stmt *st, int idx, int n, const int64_t *v)
{
    for (int i = 0; i < n; i++)
        if (h->db_bind_int(st, idx + i, v[i]) < 0)
            return CHATD_EINTERNAL;
    return n;
}

/* ---- a batch's channels and pairs ---- */

static int cmp_pair(const void *a, const void *b)
{
    const struct mpair *x = a, *y = b;
    int c = util_cmp_i64(&x->channel_id, &y->channel_id);
    return c ? c : util_cmp_i64(&x->user_id, &y->user_id);
}

int batch_collect(struct sqlctx *x, struct mjob *const *j, size_t n)
{
    x->nch = x->npr = 0;
    if (!(x->ch = calloc(n, sizeof *x->ch)) || !(x->pr = calloc(n, sizeof *x->pr)))
        return CHATD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        x->ch[i].id = j[i]->channel_id;
        x->pr[i] = (struct mpair){.channel_id = j[i]->channel_id, .user_id = j[i]->me};
    }
    qsort(x->ch, n, sizeof *x->ch, util_cmp_i64);
    qsort(x->pr, n, sizeof *x->pr, cmp_pair);
    for (size_t i = 0; i < n; i++) {
        if (!x->nch || x->ch[x->nch - 1].id != x->ch[i].id)
            x->ch[x->nch++] = x->ch[i];
        if (!x->npr || cmp_pair(&x->pr[x->npr - 1], &x->pr[i]))
            x->pr[x->npr++] = x->pr[i];
    }
    return 0;
}

void batch_free(struct sqlctx *x)
{
    free(x->ch);
    free(x->pr);
    x->ch = NULL;
    x->pr = NULL;
}

struct mchan *batch_chan(struct sqlctx *x, int64_t id)
{
    struct mchan key = {.id = id};
    return bsearch(&key, x->ch, x->nch, sizeof *x->ch, util_cmp_i64);
}

struct mpair *batch_pair(struct sqlctx *x, int64_t channel_id, int64_t user_id)
{
    struct mpair key = {.channel_id = channel_id, .user_id = user_id};
    return bsearch(&key, x->pr, x->npr, sizeof *x->pr, cmp_pair);
}

static int bind_chan(struct sqlctx *x, chatd_stmt *st, size_t i, int section, int idx)
{
    const struct mchan *c = &x->ch[i];
    int64_t v[2] = {c->id, section == 0 ? c->version : c->last_seq};
    return sql_bind_ints(x->h, st, idx, section < 2 ? 2 : 1, v);
}

static int bind_chan_id(struct sqlctx *x, chatd_stmt *st, size_t i, int section, int idx)
{
    (void)section;
    return sql_bind_ints(x->h, st, idx, 1, &x->ch[i].id);
}

static void row_chan(struct sqlctx *x, chatd_stmt *st, const size_t *items, size_t k)
{
    (void)items, (void)k;
    struct mchan *c = batch_chan(x, x->h->db_column_int(st, 0));
    if (!c)
        return;
    c->found = 1;
    c->head_count = x->h->db_column_int(st, 1);
    c->db_last_seq = c->last_seq = x->h->db_column_int(st, 2);
    c->member_version = x->h->db_column_int(st, 3);
    c->version = x->h->db_column_int(st, 4);
}

static const struct shape load_channels = {
    {{"SELECT id, head_count, last_msg_seq, member_version, version FROM channel WHERE id IN (",
      "?", ", "}},
    ") ORDER BY id",
    1,
    bind_chan_id,
    row_chan,
    0,
};

static const struct shape store_channels = {
    {{"UPDATE channel SET version = CASE id ", "WHEN ? THEN ?", " "},
     {" END, last_msg_seq = CASE id ", "WHEN ? THEN ?", " "},
     {" END WHERE id IN (", "?", ", "}},
    ")",
    1,
    bind_chan,
    NULL,
    1,
};

/* A pair: (channel, user). */
static int bind_pair(struct sqlctx *x, chatd_stmt *st, size_t i, int section, int idx)
{
    (void)section;
    int64_t v[2] = {x->pr[i].channel_id, x->pr[i].user_id};
    return sql_bind_ints(x->h, st, idx, 2, v);
}

/* The markers' UPDATE: (channel, user, new marker) in its CASE, then the
 * pair in its WHERE. */
static int bind_marker(struct sqlctx *x, chatd_stmt *st, size_t i, int section, int idx)
{
    const struct mpair *p = &x->pr[i];
    int64_t v[3] = {p->channel_id, p->user_id, p->marker};
    return sql_bind_ints(x->h, st, idx, section == 0 ? 3 : 2, v);
}

static void row_pair(struct sqlctx *x, chatd_stmt *st, const size_t *items, size_t k)
{
    (void)items, (void)k;
    struct mpair *p = batch_pair(x, x->h->db_column_int(st, 0), x->h->db_column_int(st, 1));
    if (p) {
        p->member = 1;
        p->stored = p->marker = x->h->db_column_int(st, 2);
    }
}

static const struct shape load_pairs = {
    {{"SELECT channel_id, user_id, last_read_msg_seq FROM channel_user WHERE ",
      "(channel_id = ? AND user_id = ?)", " OR "}},
    "",
    1,
    bind_pair,
    row_pair,
    0,
};

/* A marker only moves forward (GREATEST is MAX on SQLite). */
static const struct shape store_markers[2] = {
    {{{"UPDATE channel_user SET last_read_msg_seq = GREATEST(last_read_msg_seq, CASE ",
       "WHEN channel_id = ? AND user_id = ? THEN ?", " "},
      {" ELSE 0 END) WHERE ", "(channel_id = ? AND user_id = ?)", " OR "}},
     "",
     1,
     bind_marker,
     NULL,
     1},
    {{{"UPDATE channel_user SET last_read_msg_seq = MAX(last_read_msg_seq, CASE ",
       "WHEN channel_id = ? AND user_id = ? THEN ?", " "},
      {" ELSE 0 END) WHERE ", "(channel_id = ? AND user_id = ?)", " OR "}},
     "",
     1,
     bind_marker,
     NULL,
     1},
};

int batch_load(struct sqlctx *x, size_t *items, int lock_channels)
{
    const char *lock = util_for_update(x->h, x->db);
    for (size_t i = 0; i < x->nch; i++)
        items[i] = i;
    int rc = sql_run(x, &load_channels, items, x->nch, lock_channels ? lock : "");
    for (size_t i = 0; i < x->npr; i++)
        items[i] = i;
    return rc < 0 ? rc : sql_run(x, &load_pairs, items, x->npr, lock);
}

int batch_store(struct sqlctx *x, size_t *items)
{
    size_t k = 0;
    for (size_t i = 0; i < x->nch; i++)
        if (x->ch[i].changed)
            items[k++] = i;
    int rc = sql_run(x, &store_channels, items, k, "");
    k = 0;
    for (size_t i = 0; i < x->npr; i++)
        if (x->pr[i].marker > x->pr[i].stored)
            items[k++] = i;
    int sqlite = strcmp(x->h->db_dialect(x->db), "sqlite") == 0;
    return rc < 0 ? rc : sql_run(x, &store_markers[sqlite], items, k, "");
}
