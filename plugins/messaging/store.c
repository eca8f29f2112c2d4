/* SQL of the messaging plugin's writes: messages, edits, deletions,
 * reactions, read markers. Each change takes the channel's next version,
 * under the channel row's lock where the dialect needs one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging.h"
#include "wire.h"

/* The other members of the channel, for the push decision after commit. */
static int load_members(struct mjob *j, chatd_db *db, int64_t version)
{
    mcache_release(j->mp->members, j->members); /* from an attempt rolled back */
    j->members = NULL;
    int rc = mcache_get(j->mp->members, j->mp->host, db, j->channel_id, version, &j->members);
    if (rc < 0)
        return rc;
    size_t n = members_count(j->members);
    free(j->member_ids);
    free(j->member_name_ptrs);
    j->member_ids = malloc((n + 1) * sizeof *j->member_ids);
    j->member_name_ptrs = malloc((n + 1) * sizeof *j->member_name_ptrs);
    if (!j->member_ids || !j->member_name_ptrs)
        return CHATD_ENOMEM;
    j->n_members = members_others(j->members, j->me, j->member_ids, j->member_name_ptrs);
    return 0;
}

/* The NOTIFY_MESSAGE of the write (for the members and for push): 1 when
 * there is someone to push to, whose push intent is then to be stored in
 * this transaction (before anyone is told of the message), else 0. */
static int make_note(struct mjob *j)
{
    json_decref(j->note); /* from an attempt rolled back */
    j->push_ref = 0;
    if (!(j->note = wire_notify_message(j)))
        return CHATD_ENOMEM;
    if (!j->n_members)
        return 0;
    /* Everyone was entered (here, or on another node as Redis said lately:
     * host->user_entered), and the members are the same: nobody is away to
     * push to. One who has left since is found absent after the commit, and
     * pushed from memory (no intent to recover it by). */
    return !(j->entered_version && j->entered_version == members_version(j->members));
}

/* A retry of a message this user wrote with the same clientMessageId: its
 * sequence, time and version, or nothing. 1 found, 0 not, or an error. */
static int find_retry(struct mjob *j, chatd_db *db)
{
    const chatd_host *h = j->mp->host;
    chatd_stmt *st = util_bind(h, db,
                               "SELECT seq, created_at, version, reply_to FROM message"
                               " WHERE channel_id = ? AND user_id = ? AND client_message_id = ?",
                               "iis", j->channel_id, j->me, j->client_id);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW) {
        j->seq = h->db_column_int(st, 0);
        j->created_ms = h->db_column_int(st, 1);
        j->version = h->db_column_int(st, 2);
        j->reply_to = h->db_column_is_null(st, 3) ? 0 : h->db_column_int(st, 3);
    }
    h->db_reset(st);
    return rc == CHATD_ROW ? 1 : rc == CHATD_DONE ? 0 : rc;
}

/* The channel's next version, taken by this change (its row is locked). */
static int bump_channel(const chatd_host *h, chatd_db *db, struct mjob *j, int64_t version,
                        int64_t last_seq)
{
    j->version = version + 1;
    return util_exec_later(h, db, "UPDATE channel SET version = ?, last_msg_seq = ? WHERE id = ?",
                           "iii", j->version, last_seq, j->channel_id);
}

int mstore_write(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    struct util_member info;
    /* Locks the channel row where the dialect needs it: writers to one channel
     * take their sequence numbers one after the other. */
    int rc = util_channel_member(h, db, j->channel_id, j->me, 1, &info);
    if (rc < 0)
        return rc;
    j->duplicate = 0;
    if (j->reply_to) {
        int64_t one;
        rc = util_int(h, db, &one, "SELECT 1 FROM message WHERE channel_id = ? AND seq = ?", "ii",
                      j->channel_id, j->reply_to);
        if (rc == CHATD_ENOTFOUND)
            j->problem = "replyTo names no message of this channel";
        if (rc < 0)
            return rc;
    }
    j->seq = info.last_seq + 1;
    j->created_ms = h->now_ms();
    j->version = info.version + 1;
    /* Taken for a new write: the unique index of (channel, user,
     * clientMessageId) finds a retry, whose INSERT fails having written
     * nothing; the first write's results are then looked up. */
    rc = util_exec(h, db,
                   "INSERT INTO message (channel_id, seq, user_id, content, client_message_id,"
                   " created_at, version, reply_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   "iiissiin", j->channel_id, j->seq, j->me, j->content,
                   j->has_client_id ? j->client_id : NULL, j->created_ms, j->version, j->reply_to);
    if (rc == CHATD_ECONFLICT && j->has_client_id) {
        int found = find_retry(j, db);
        j->duplicate = found > 0;
        return found > 0 ? 0 : found < 0 ? found : CHATD_ECONFLICT;
    }
    if (rc == 0)
        rc = bump_channel(h, db, j, info.version, j->seq);
    /* What one writes one has read: it is not unread on one's other devices. */
    if (rc == 0)
        rc = util_exec_later(h, db,
                             "UPDATE channel_user SET last_read_msg_seq = ?"
                             " WHERE channel_id = ? AND user_id = ? AND last_read_msg_seq < ?",
                             "iiii", j->seq, j->channel_id, j->me, j->seq);
    return rc < 0 ? rc : mstore_write_tail(j, db, info.member_version);
}

int mstore_write_note(struct mjob *j, chatd_db *db, int64_t member_version)
{
    int rc = load_members(j, db, member_version);
    return rc < 0 ? rc : make_note(j);
}

int mstore_write_tail(struct mjob *j, chatd_db *db, int64_t member_version)
{
    int rc = mstore_write_note(j, db, member_version);
    if (rc <= 0)
        return rc;
    int64_t ref = j->mp->host->push_intent(db, j->channel_id, 0, j->me, "NOTIFY_MESSAGE", j->note);
    if (ref < 0)
        return (int)ref;
    j->push_ref = ref;
    return 0;
}

/* The message the request names, as it is now. */
struct target {
    int64_t author, created_ms, version;
    int deleted;
};

static int load_target(struct mjob *j, chatd_db *db, struct target *t)
{
    const chatd_host *h = j->mp->host;
    chatd_stmt *st = util_bind(h, db,
                               "SELECT m.user_id, m.created_at, m.version, m.deleted, u.username"
                               " FROM message m JOIN message_user u ON u.id = m.user_id"
                               " WHERE m.channel_id = ? AND m.seq = ?",
                               "ii", j->channel_id, j->seq);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW) {
        t->author = h->db_column_int(st, 0);
        t->created_ms = h->db_column_int(st, 1);
        t->version = h->db_column_int(st, 2);
        t->deleted = h->db_column_int(st, 3) != 0;
        snprintf(j->author, sizeof j->author, "%s", h->db_column_text(st, 4, NULL));
    }
    h->db_reset(st);
    if (rc == CHATD_DONE) {
        j->problem = "no message with this messageSequence in the channel";
        return CHATD_ENOTFOUND;
    }
    return rc == CHATD_ROW ? 0 : rc;
}

int mstore_edit(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    struct util_member info;
    struct target t;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 1, &info);
    if (rc < 0 || (rc = load_target(j, db, &t)) < 0)
        return rc;
    j->edited_ms = h->now_ms();
    if (t.deleted) {
        j->problem = "the message was deleted: it cannot be edited";
        return CHATD_ECONFLICT;
    }
    if (t.author != j->me) {
        j->problem = "only the author edits a message";
        return CHATD_EFORBIDDEN;
    }
    if (j->mp->edit_window_ms && j->edited_ms - t.created_ms > j->mp->edit_window_ms) {
        j->problem = "the message is older than the edit window (edit_window)";
        return CHATD_EFORBIDDEN;
    }
    /* The rows are locked and checked: what is left goes with the commit. */
    rc = bump_channel(h, db, j, info.version, info.last_seq);
    if (rc == 0)
        rc = util_exec_later(h, db,
                             "UPDATE message SET content = ?, edited_at = ?, version = ?"
                             " WHERE channel_id = ? AND seq = ?",
                             "siiii", j->content, j->edited_ms, j->version, j->channel_id, j->seq);
    return rc;
}

int mstore_delete(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    struct util_member info;
    struct target t;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 1, &info);
    if (rc < 0 || (rc = load_target(j, db, &t)) < 0)
        return rc;
    j->changed = 0;
    if (t.deleted) { /* a retry: the same answer */
        j->version = t.version;
        return 0;
    }
    if (t.author != j->me && !(info.created_by == j->me && !info.direct)) {
        j->problem = "only the author, or the creator of a group channel, deletes a message";
        return CHATD_EFORBIDDEN;
    }
    j->changed = 1;
    rc = bump_channel(h, db, j, info.version, info.last_seq);
    /* Its content and reactions are gone from storage; its sequence stays.
     * All of it goes with the commit. */
    if (rc == 0)
        rc = util_exec_later(h, db,
                             "UPDATE message SET content = '', deleted = 1, version = ?"
                             " WHERE channel_id = ? AND seq = ?",
                             "iii", j->version, j->channel_id, j->seq);
    if (rc == 0)
        rc = util_exec_later(h, db, "DELETE FROM message_reaction WHERE channel_id = ? AND seq = ?",
                             "ii", j->channel_id, j->seq);
    return rc;
}

/* Whether the user's reaction with the emoji is there, and whether a new
 * emoji would pass max_reactions_per_message. */
static int reaction_state(struct mjob *j, chatd_db *db, int *mine, int *full)
{
    const chatd_host *h = j->mp->host;
    chatd_stmt *st = util_bind(h, db,
                               "SELECT emoji, SUM(CASE WHEN user_id = ? THEN 1 ELSE 0 END)"
                               " FROM message_reaction WHERE channel_id = ? AND seq = ?"
                               " GROUP BY emoji",
                               "iii", j->me, j->channel_id, j->seq);
    if (!st)
        return CHATD_EINTERNAL;
    int rc, present = 0;
    int64_t distinct = 0;
    *mine = 0;
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        distinct++;
        if (strcmp(h->db_column_text(st, 0, NULL), j->emoji) == 0) {
            present = 1;
            *mine = h->db_column_int(st, 1) > 0;
        }
    }
    h->db_reset(st);
    *full = !present && distinct >= j->mp->max_reactions;
    return rc == CHATD_DONE ? 0 : rc;
}

int mstore_react(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    struct util_member info;
    struct target t;
    int mine, full;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 1, &info);
    if (rc < 0 || (rc = load_target(j, db, &t)) < 0)
        return rc;
    if (t.deleted) {
        j->problem = "the message was deleted: it takes no reactions";
        return CHATD_ECONFLICT;
    }
    if ((rc = reaction_state(j, db, &mine, &full)) < 0)
        return rc;
    j->changed = j->on != mine;
    if (!j->changed) { /* on again, or off when absent: the same answer */
        j->version = t.version;
        return 0;
    }
    if (j->on && full) {
        j->problem = "too many different reactions on this message (max_reactions_per_message)";
        return CHATD_ELIMIT;
    }
    rc = j->on ? util_exec(h, db,
                           "INSERT INTO message_reaction (channel_id, seq, user_id, emoji,"
                           " created_at) VALUES (?, ?, ?, ?, ?)",
                           "iiisi", j->channel_id, j->seq, j->me, j->emoji, h->now_ms())
               : util_exec(h, db,
                           "DELETE FROM message_reaction WHERE channel_id = ? AND seq = ?"
                           " AND user_id = ? AND emoji = ?",
                           "iiis", j->channel_id, j->seq, j->me, j->emoji);
    if (rc == 0)
        rc = bump_channel(h, db, j, info.version, info.last_seq);
    if (rc == 0)
        rc = util_exec_later(h, db,
                             "UPDATE message SET version = ? WHERE channel_id = ? AND seq = ?",
                             "iii", j->version, j->channel_id, j->seq);
    return rc;
}

int mstore_read_ack(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    struct util_member info;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 0, &info);
    if (rc < 0)
        return rc;
    j->seq = j->seq < info.last_seq ? j->seq : info.last_seq; /* never past the last */
    j->head_count = info.head_count;
    rc = util_exec(h, db,
                   "UPDATE channel_user SET last_read_msg_seq = ? WHERE channel_id = ?"
                   " AND user_id = ? AND last_read_msg_seq < ?",
                   "iiii", j->seq, j->channel_id, j->me, j->seq);
    j->changed = rc == 0 && h->db_changes(db) > 0;
    return rc;
}

int mstore_check_member(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    return util_channel_member(j->mp->host, db, j->channel_id, j->me, 0, NULL);
}

int mstore_remove_user(chatd_db *db, int64_t user_id, void *state)
{
    struct mplug *mp = state;
    return util_exec(mp->host, db, "DELETE FROM message WHERE user_id = ?", "i", user_id);
}
