/* SQL of the messaging plugin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging.h"

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
    if (j->has_client_id) {
        chatd_stmt *st = util_bind(h, db,
                                   "SELECT seq, created_at FROM message WHERE channel_id = ?"
                                   " AND user_id = ? AND client_message_id = ?",
                                   "iis", j->channel_id, j->me, j->client_id);
        if (!st)
            return CHATD_EINTERNAL;
        rc = h->db_step(st);
        if (rc == CHATD_ROW) {
            j->seq = h->db_column_int(st, 0);
            j->created_ms = h->db_column_int(st, 1);
            j->duplicate = 1;
        }
        h->db_reset(st);
        if (rc < 0)
            return rc;
        if (j->duplicate)
            return 0;
    }
    j->seq = info.last_seq + 1;
    j->created_ms = h->now_ms();
    rc = util_exec(h, db, "UPDATE channel SET last_msg_seq = ? WHERE id = ?", "ii", j->seq,
                   j->channel_id);
    if (rc == 0)
        rc = util_exec(h, db,
                       "INSERT INTO message (channel_id, seq, user_id, content, client_message_id,"
                       " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       "iiissi", j->channel_id, j->seq, j->me, j->content,
                       j->has_client_id ? j->client_id : NULL, j->created_ms);
    return rc < 0 ? rc : load_members(j, db, info.member_version);
}

int mstore_fetch(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 0, NULL);
    if (rc < 0)
        return rc;
    chatd_stmt *st = util_bind(h, db,
                               "SELECT m.seq, u.username, m.content, m.created_at FROM message m"
                               " JOIN message_user u ON u.id = m.user_id"
                               " WHERE m.channel_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?",
                               "iii", j->channel_id, j->seq, j->limit);
    if (!st)
        return CHATD_EINTERNAL;
    json_decref(j->list);
    if (!(j->list = json_array())) {
        h->db_reset(st);
        return CHATD_ENOMEM;
    }
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        char at[32];
        util_time_rfc3339(h->db_column_int(st, 3), at, sizeof at);
        /* newest first from the index; the answer is ascending */
        json_array_insert_new(j->list, 0,
                              json_pack("{s:I, s:s, s:s, s:s}", "messageSequence",
                                        (json_int_t)h->db_column_int(st, 0), "username",
                                        h->db_column_text(st, 1, NULL), "content",
                                        h->db_column_text(st, 2, NULL), "createdAt", at));
    }
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

int mstore_read_ack(chatd_db *db, void *arg)
{
    struct mjob *j = arg;
    const chatd_host *h = j->mp->host;
    struct util_member info;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 0, &info);
    if (rc < 0)
        return rc;
    int64_t upto = j->seq < info.last_seq ? j->seq : info.last_seq; /* never past the last */
    return util_exec(h, db,
                     "UPDATE channel_user SET last_read_msg_seq = ? WHERE channel_id = ?"
                     " AND user_id = ? AND last_read_msg_seq < ?",
                     "iiii", upto, j->channel_id, j->me, upto);
}

int mstore_remove_user(chatd_db *db, int64_t user_id, void *state)
{
    struct mplug *mp = state;
    return util_exec(mp->host, db, "DELETE FROM message WHERE user_id = ?", "i", user_id);
}
