/* Statements over many rows at once, for the writes of a batch (batch.c,
 * batch_read.c): a statement's text with an item's part repeated, its
 * parameters bound item by item, in chunks of at most ROWS_MAX items. */
#ifndef CHATD_MESSAGING_ROWS_H
#define CHATD_MESSAGING_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include <chatd/plugin.h>

#define ROWS_MAX 64 /* items of one statement, at most */

struct mjob;

/* A channel of the batch, as its row was read and as the batch moves it. */
struct mchan {
    int64_t id, head_count, db_last_seq, last_seq, version, member_version;
    int found, changed;
};

/* A member's read marker in a channel, as read (stored) and as the batch
 * moves it (marker > stored: to be written). */
struct mpair {
    int64_t channel_id, user_id, stored, marker;
    int member;
};

/* The first member of a batch's own state: what the callbacks are given,
 * with the batch's channels and (channel, user) pairs, sorted. */
struct sqlctx {
    const chatd_host *h;
    chatd_db *db;
    struct mchan *ch;
    size_t nch;
    struct mpair *pr;
    size_t npr;
    size_t run_done; /* items of the last sql_run whose statements ran */
};

/*
 * The shape of a statement over items: up to three sections, each a text
 * and an item's text repeated (joined by sep), then a tail. bind() binds
 * one item's parameters of a section from idx on and returns how many (or
 * a negative CHATD_E*); row(), when set, takes each row of the result, with
 * the chunk's items.
 */
struct shape {
    struct {
        const char *text, *item, *sep;
    } sec[3];
    const char *tail;
    int pad; /* repeat the last item up to a power of two; else 64, 32, ... rows */
    int (*bind)(struct sqlctx *x, chatd_stmt *st, size_t item, int section, int idx);
    void (*row)(struct sqlctx *x, chatd_stmt *st, const size_t *items, size_t k);
    int later; /* no rows: may run with the next statement or the commit (db_step_later) */
};

/* Run s over items[0..k) (indexes the callbacks understand), extra appended
 * to its text (" FOR UPDATE", say). 0 or a negative CHATD_E*. */
int sql_run(struct sqlctx *x, const struct shape *s, const size_t *items, size_t k,
            const char *extra);
/* Bind v[0..n) from idx on: n, or CHATD_EINTERNAL. */
int sql_bind_ints(const chatd_host *h, chatd_stmt *st, int idx, int n, const int64_t *v);
/* The distinct channels and (channel, user) pairs of jobs j[0..n): x's ch
 * and pr (freed by batch_free). 0 or CHATD_ENOMEM. */
int batch_collect(struct sqlctx *x, struct mjob *const *j, size_t n);
void batch_free(struct sqlctx *x);
struct mchan *batch_chan(struct sqlctx *x, int64_t id);
struct mpair *batch_pair(struct sqlctx *x, int64_t channel_id, int64_t user_id);
/* Read the channels' rows (locked, in id order, when lock_channels) and the
 * pairs' (whether a member, the marker; locked), where the dialect locks
 * rows; items: room for n indexes. */
int batch_load(struct sqlctx *x, size_t *items, int lock_channels);
/* Write the channels that changed (version, last sequence) and the markers
 * that moved forward. */
int batch_store(struct sqlctx *x, size_t *items);

#endif
