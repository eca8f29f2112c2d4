/* SQL of the messaging plugin's reads: pages of history by sequence, catch-up
 * by version, read markers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging.h"
#include "wire.h"

#define MESSAGE_COLUMNS                                                                            \
    "SELECT m.seq, u.username, m.content, m.created_at, m.version, m.edited_at, m.deleted,"        \
    " m.reply_to FROM message m JOIN message_user u ON u.id = m.user_id"

/* Append the rows of st (MESSAGE_COLUMNS) to j->list, at most j->limit of
 * them; one more sets has_more. At the front instead when newest_first. */
static int collect(struct mjob *j, chatd_stmt *st, int newest_first)
{
    const chatd_host *h = j->mp->host;
    int rc;
    int64_t n = 0;
    j->has_more = 0;
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        if (n++ == j->limit) {
            j->has_more = 1;
            break;
        }
        json_t *m = wire_message(
            h->db_column_int(st, 0), h->db_column_text(st, 1, NULL), h->db_column_text(st, 2, NULL),
            h->db_column_int(st, 3), h->db_column_int(st, 4),
            h->db_column_is_null(st, 5) ? 0 : h->db_column_int(st, 5), (int)h->db_column_int(st, 6),
            h->db_column_is_null(st, 7) ? 0 : h->db_column_int(st, 7));
        if (!m) {
            rc = CHATD_ENOMEM;
            break;
        }
        if (newest_first)
            json_array_insert_new(j->list, 0, m);
        else
            json_array_append_new(j->list, m);
    }
    h->db_reset(st);
    return rc == CHATD_DONE || rc == CHATD_ROW ? 0 : rc;
}

/* The reactions of the messages in j->list (ascending or not), in one query
 * over their range of sequences. */
static int add_reactions(struct mjob *j, chatd_db *db)
{
    const chatd_host *h = j->mp->host;
    size_t n = json_array_size(j->list);
    if (n == 0)
        return 0;
    int64_t lo = INT64_MAX, hi = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t s =
            json_integer_value(json_object_get(json_array_get(j->list, i), "messageSequence"));
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    chatd_stmt *st =
        util_bind(h, db,
                  "SELECT seq, emoji, COUNT(*), SUM(CASE WHEN user_id = ? THEN 1 ELSE 0"
                  " END), MIN(created_at) FROM message_reaction WHERE channel_id = ?"
                  " AND seq >= ? AND seq <= ? GROUP BY seq, emoji"
                  " ORDER BY seq, MIN(created_at), emoji",
                  "iiii", j->me, j->channel_id, lo, hi);
    if (!st)
        return CHATD_EINTERNAL;
    int rc;
    size_t at = 0;
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        int64_t seq = h->db_column_int(st, 0);
        json_t *m = NULL;
        for (size_t k = 0; k < n && !m; k++) { /* usually the next one along */
            json_t *c = json_array_get(j->list, (at + k) % n);
            if (json_integer_value(json_object_get(c, "messageSequence")) == seq) {
                m = c;
                at = (at + k) % n;
            }
        }
        if (m) /* sync pages are not contiguous: the range may hold others */
            wire_add_reaction(m, h->db_column_text(st, 1, NULL), h->db_column_int(st, 2),
                              h->db_column_int(st, 3) > 0);
    }
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

static int new_list(struct mjob *j)
{
    json_decref(j->list);
    return (j->list = json_array()) ? 0 : CHATD_ENOMEM;
}

int mstore_fetch(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 0, NULL);
    if (rc < 0 || (rc = new_list(j)) < 0)
        return rc;
    int after = j->after >= 0;
    chatd_stmt *st = after ? util_bind(h, db,
                                       MESSAGE_COLUMNS " WHERE m.channel_id = ? AND m.seq > ?"
                                                       " ORDER BY m.seq ASC LIMIT ?",
                                       "iii", j->channel_id, j->after, j->limit + 1)
                           : util_bind(h, db,
                                       MESSAGE_COLUMNS " WHERE m.channel_id = ? AND m.seq < ?"
                                                       " ORDER BY m.seq DESC LIMIT ?",
                                       "iii", j->channel_id, j->before, j->limit + 1);
    if (!st)
        return CHATD_EINTERNAL;
    /* newest first from the index before a point; the answer is ascending */
    rc = collect(j, st, !after);
    return rc < 0 ? rc : add_reactions(j, db);
}

int mstore_sync(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    struct util_member info;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 0, &info);
    if (rc < 0 || (rc = new_list(j)) < 0)
        return rc;
    chatd_stmt *st = util_bind(h, db,
                               MESSAGE_COLUMNS " WHERE m.channel_id = ? AND m.version > ?"
                                               " ORDER BY m.version ASC LIMIT ?",
                               "iii", j->channel_id, j->since, j->limit + 1);
    if (!st)
        return CHATD_EINTERNAL;
    if ((rc = collect(j, st, 0)) < 0 || (rc = add_reactions(j, db)) < 0)
        return rc;
    /* Sync again from this: the channel's version, or where this page ends. */
    size_t n = json_array_size(j->list);
    j->version =
        j->has_more && n
            ? json_integer_value(json_object_get(json_array_get(j->list, n - 1), "version"))
            : info.version;
    return 0;
}

int mstore_markers(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 0, NULL);
    if (rc < 0 || (rc = new_list(j)) < 0)
        return rc;
    chatd_stmt *st = util_bind(h, db,
                               "SELECT u.username, cu.last_read_msg_seq FROM channel_user cu"
                               " JOIN message_user u ON u.id = cu.user_id"
                               " WHERE cu.channel_id = ? ORDER BY u.username",
                               "i", j->channel_id);
    if (!st)
        return CHATD_EINTERNAL;
    while ((rc = h->db_step(st)) == CHATD_ROW)
        json_array_append_new(j->list,
                              json_pack("{s:s, s:I}", "username", h->db_column_text(st, 0, NULL),
                                        "messageSequence", (json_int_t)h->db_column_int(st, 1)));
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}
