/* WRITE_MESSAGE for the consecutive writes of a write batch at once
 * (host->job_batch): the checks and rows of mstore_write, each statement for
 * up to ROWS_MAX of them where mstore_write takes five per message. */
#include <stdlib.h>
#include <string.h>

#include "messaging.h"
#include "rows.h"

/* What the batch knows of each job. */
struct aux {
    struct mchan *c;
    struct mpair *p;
    int reply_found; /* its replyTo is a stored message */
};

struct wbatch {
    struct sqlctx x; /* first: the callbacks get it */
    struct mjob **j;
    int *status;
    struct aux *a;
    size_t n;
    int found_retry; /* the INSERT of writes taken for new ones met a retry */
};

/* The batch's channels and pairs, and each job's. */
static int collect(struct wbatch *w)
{
    int rc = batch_collect(&w->x, w->j, w->n);
    for (size_t i = 0; rc == 0 && i < w->n; i++) {
        w->a[i].c = batch_chan(&w->x, w->j[i]->channel_id);
        w->a[i].p = batch_pair(&w->x, w->j[i]->channel_id, w->j[i]->me);
    }
    return rc;
}

/* ---- retries, replies, the new messages ---- */

static int bind_retry(struct sqlctx *x, chatd_stmt *st, size_t i, int section, int idx)
{
    struct wbatch *w = (struct wbatch *)x;
    (void)section;
    const struct mjob *j = w->j[i];
    int64_t v[2] = {j->channel_id, j->me};
    if (sql_bind_ints(w->x.h, st, idx, 2, v) < 0 ||
        w->x.h->db_bind_text(st, idx + 2, j->client_id, strlen(j->client_id)) < 0)
        return CHATD_EINTERNAL;
    return 3;
}

static void row_retry(struct sqlctx *x, chatd_stmt *st, const size_t *items, size_t k)
{
    struct wbatch *w = (struct wbatch *)x;
    const chatd_host *h = w->x.h;
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
    0,
};

static int bind_reply(struct sqlctx *x, chatd_stmt *st, size_t i, int section, int idx)
{
    struct wbatch *w = (struct wbatch *)x;
    (void)section;
    int64_t v[2] = {w->j[i]->channel_id, w->j[i]->reply_to};
    return sql_bind_ints(w->x.h, st, idx, 2, v);
}

static void row_reply(struct sqlctx *x, chatd_stmt *st, const size_t *items, size_t k)
{
    struct wbatch *w = (struct wbatch *)x;
    int64_t channel = w->x.h->db_column_int(st, 0), seq = w->x.h->db_column_int(st, 1);
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
    0,
};

static int bind_message(struct sqlctx *x, chatd_stmt *st, size_t i, int section, int idx)
{
    struct wbatch *w = (struct wbatch *)x;
    (void)section;
    const chatd_host *h = w->x.h;
    const struct mjob *j = w->j[i];
    int64_t v[3] = {j->channel_id, j->seq, j->me}, t[2] = {j->created_ms, j->version};
    if (sql_bind_ints(h, st, idx, 3, v) < 0 ||
        h->db_bind_text(st, idx + 3, j->content, strlen(j->content)) < 0 ||
        (j->has_client_id ? h->db_bind_text(st, idx + 4, j->client_id, strlen(j->client_id))
                          : h->db_bind_null(st, idx + 4)) < 0 ||
        sql_bind_ints(h, st, idx + 5, 2, t) < 0 ||
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
    0,
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
    int64_t now = w->x.h->now_ms();
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
    const chatd_host *h = w->x.h;
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) {
        struct mjob *j = w->j[i];
        if (w->status[i] != 0 || j->duplicate)
            continue;
        int rc = mstore_write_note(j, w->x.db, w->a[i].c->member_version);
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
        rc = h->push_intents(w->x.db, in, k, refs);
    else
        for (size_t x = 0; rc == 0 && x < k; x++) { /* an ABI 1.1 host: one by one */
            refs[x] = h->push_intent(w->x.db, in[x].channel_id, 0, in[x].except_user, in[x].type,
                                     in[x].body);
            rc = refs[x] < 0 ? (int)refs[x] : 0;
        }
    for (size_t x = 0; rc == 0 && x < k; x++)
        w->j[items[x]]->push_ref = refs[x];
    free(in);
    free(refs);
    return rc;
}

/* check_retries 0: the writes are taken for new ones, and the unique index of
 * (channel, user, clientMessageId) finds a retry among them: the INSERT then
 * fails (CHATD_ECONFLICT), and the batch is run again with them looked up
 * first. A retry is rare (a client's resend after a reconnect), its lookup a
 * round trip each batch. */
static int run_batch(struct wbatch *w, size_t *items, int check_retries)
{
    int rc = collect(w);
    if (rc == 0)
        rc = batch_load(&w->x, items, 1);
    for (size_t i = 0; rc == 0 && i < w->n; i++) {
        w->j[i]->duplicate = 0;
        w->j[i]->problem = NULL;
        w->a[i].reply_found = 0;
        w->status[i] = !w->a[i].c->found    ? CHATD_ENOTFOUND
                       : !w->a[i].p->member ? CHATD_EFORBIDDEN
                                            : 0;
    }
    if (rc == 0 && check_retries)
        rc = sql_run(&w->x, &find_retries, items, pick(w, items, wants_retry_check), "");
    if (rc == 0)
        rc = sql_run(&w->x, &check_replies, items, pick(w, items, wants_reply_check), "");
    if (rc < 0)
        return rc;
    assign(w);
    rc = sql_run(&w->x, &insert_messages, items, pick(w, items, NULL), "");
    /* In place again only if nothing was written; else the core takes the
     * transaction back and runs the writes one by one. */
    if (rc == CHATD_ECONFLICT && !check_retries)
        w->found_retry = w->x.run_done == 0;
    if (rc < 0 || (rc = batch_store(&w->x, items)) < 0)
        return rc;
    return store_intents(w, items);
}

int mstore_write_batch(chatd_db *db, void *const *args, int *status, size_t n)
{
    struct wbatch w = {.x = {.db = db}, .j = (struct mjob **)args, .status = status, .n = n};
    w.x.h = w.j[0]->mp->host;
    w.a = calloc(n, sizeof *w.a);
    size_t *items = calloc(n, sizeof *items);
    int rc = w.a && items ? run_batch(&w, items, 0) : CHATD_ENOMEM;
    if (rc == CHATD_ECONFLICT && w.found_retry) {
        batch_free(&w.x);
        memset(w.a, 0, n * sizeof *w.a);
        rc = run_batch(&w, items, 1);
    }
    free(items);
    free(w.a);
    batch_free(&w.x);
    return rc;
}
