/* SQL of the channel plugin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"

static int set_title(struct chjob *j, const char *title)
{
    char *t = strdup(title ? title : "");
    if (!t)
        return CHATD_ENOMEM;
    free(j->title);
    j->title = t;
    return 0;
}

/* Resolve the participants' names, drop duplicates, check each is an
 * accepted connection of the creator. */
static int resolve_people(struct chjob *j, chatd_db *db)
{
    const chatd_host *h = j->cp->host;
    size_t kept = 0;
    for (size_t i = 0; i < j->n_people; i++) {
        struct person *p = &j->people[i];
        chatd_stmt *st = util_bind(
            h, db, "SELECT id, username FROM message_user WHERE username = ?", "s", p->name);
        if (!st)
            return CHATD_EINTERNAL;
        int rc = h->db_step(st);
        if (rc == CHATD_ROW) {
            p->id = h->db_column_int(st, 0);
            snprintf(p->name, sizeof p->name, "%s", h->db_column_text(st, 1, NULL));
        }
        h->db_reset(st);
        if (rc != CHATD_ROW) {
            snprintf(j->bad_name, sizeof j->bad_name, "%s", p->name);
            return rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
        }
        if (p->id == j->me)
            return CHATD_EINVAL;
        int dup = 0;
        for (size_t k = 0; k < kept; k++)
            dup |= j->people[k].id == p->id;
        if (dup)
            continue;
        int64_t accepted = 0;
        rc = util_int(h, db, &accepted,
                      "SELECT COUNT(*) FROM user_connection WHERE user_a_id = ? AND user_b_id = ?"
                      " AND status = 'ACCEPTED'",
                      "ii", j->me < p->id ? j->me : p->id, j->me < p->id ? p->id : j->me);
        if (rc < 0)
            return rc;
        if (!accepted) {
            snprintf(j->bad_name, sizeof j->bad_name, "%s", p->name);
            return CHATD_EFORBIDDEN;
        }
        j->people[kept++] = *p;
    }
    j->n_people = kept;
    return 1 + (int64_t)kept > j->cp->max_members ? CHATD_ELIMIT : 0;
}

/* A new channel.member_version for a change of members. Random rather than
 * counted: a version read inside a transaction that was then rolled back is
 * never given again to other members (members.c of messaging relies on it). */
static int64_t member_version(const chatd_host *h)
{
    static _Atomic uint64_t fallback;
    uint64_t v = 0;
    if (h->random_bytes(&v, sizeof v) != 0) /* never seen; still never the same twice here */
        v = ((uint64_t)h->now_ms() << 20) ^ ++fallback;
    return (int64_t)(v >> 2) + 1;
}

static int add_member(struct chjob *j, chatd_db *db, int64_t channel, int64_t user, int64_t now)
{
    return util_exec(j->cp->host, db,
                     "INSERT INTO channel_user (channel_id, user_id, last_read_msg_seq, joined_at)"
                     " VALUES (?, ?, 0, ?)",
                     "iii", channel, user, now);
}

int chstore_create(chatd_db *db, void *arg)
{
    struct chjob *j = arg;
    const chatd_host *h = j->cp->host;
    int rc = resolve_people(j, db);
    if (rc < 0)
        return rc;
    char direct_key[48] = "";
    if (j->direct) {
        int64_t a = j->me, b = j->people[0].id;
        snprintf(direct_key, sizeof direct_key, "%lld:%lld", (long long)(a < b ? a : b),
                 (long long)(a < b ? b : a));
        /* One direct channel per pair while both are in it. */
        chatd_stmt *st = util_bind(
            h, db,
            "SELECT c.id, c.title FROM channel c WHERE c.direct_key = ?"
            " AND EXISTS (SELECT 1 FROM channel_user WHERE channel_id = c.id AND user_id = ?)"
            " AND EXISTS (SELECT 1 FROM channel_user WHERE channel_id = c.id AND user_id = ?)"
            " ORDER BY c.id LIMIT 1",
            "sii", direct_key, a, b);
        if (!st)
            return CHATD_EINTERNAL;
        rc = h->db_step(st);
        if (rc == CHATD_ROW) {
            j->channel_id = h->db_column_int(st, 0);
            rc = set_title(j, h->db_column_text(st, 1, NULL));
            j->existing = 1;
        }
        h->db_reset(st);
        if (j->existing || rc < 0)
            return rc < 0 ? rc : 0;
    }
    j->existing = 0;
    int64_t now = h->now_ms();
    for (int attempt = 0; attempt < 5; attempt++) {
        util_invite_code(h, j->code);
        rc = util_exec(h, db,
                       "INSERT INTO channel (title, kind, invite_code, head_count, last_msg_seq,"
                       " direct_key, created_by, created_at, member_version)"
                       " VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
                       "sssisiii", j->title, j->direct ? "DIRECT" : "GROUP", j->code,
                       (int64_t)j->n_people + 1, j->direct ? direct_key : NULL, j->me, now,
                       member_version(h));
        if (rc != CHATD_ECONFLICT)
            break; /* an invite code clash is the only possible conflict */
    }
    if (rc < 0)
        return rc;
    j->channel_id = h->db_last_insert_id(db);
    rc = add_member(j, db, j->channel_id, j->me, now);
    for (size_t i = 0; rc == 0 && i < j->n_people; i++)
        rc = add_member(j, db, j->channel_id, j->people[i].id, now);
    return rc;
}

int chstore_fetch_code(chatd_db *db, void *arg)
{
    struct chjob *j = arg;
    const chatd_host *h = j->cp->host;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 0, NULL);
    if (rc < 0)
        return rc;
    chatd_stmt *st =
        util_bind(h, db, "SELECT invite_code, kind FROM channel WHERE id = ?", "i", j->channel_id);
    if (!st)
        return CHATD_EINTERNAL;
    rc = h->db_step(st);
    if (rc == CHATD_ROW) {
        snprintf(j->code, sizeof j->code, "%s", h->db_column_text(st, 0, NULL));
        j->is_direct = strcmp(h->db_column_text(st, 1, NULL), "DIRECT") == 0;
    }
    h->db_reset(st);
    if (rc == CHATD_ROW && j->is_direct) {
        j->code[0] = '\0';
        return CHATD_EFORBIDDEN; /* a direct channel has its two members and no code */
    }
    return rc == CHATD_ROW ? 0 : rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
}

int chstore_join(chatd_db *db, void *arg)
{
    struct chjob *j = arg;
    const chatd_host *h = j->cp->host;
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT id, title, head_count, kind FROM channel WHERE invite_code = ?%s",
             util_for_update(h, db));
    chatd_stmt *st = util_bind(h, db, sql, "s", j->code);
    if (!st)
        return CHATD_EINTERNAL;
    int64_t heads = 0;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW) {
        j->channel_id = h->db_column_int(st, 0);
        rc = set_title(j, h->db_column_text(st, 1, NULL)) < 0 ? CHATD_ENOMEM : CHATD_ROW;
        heads = h->db_column_int(st, 2);
        j->is_direct = strcmp(h->db_column_text(st, 3, NULL), "DIRECT") == 0;
    }
    h->db_reset(st);
    if (rc != CHATD_ROW)
        return rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
    if (j->is_direct)
        return CHATD_EFORBIDDEN; /* exactly its two members, ever */
    rc = util_channel_member(h, db, j->channel_id, j->me, 0, NULL);
    if (rc == 0)
        return CHATD_ECONFLICT;
    if (rc != CHATD_EFORBIDDEN)
        return rc;
    if (heads >= j->cp->max_members)
        return CHATD_ELIMIT;
    rc = add_member(j, db, j->channel_id, j->me, h->now_ms());
    if (rc < 0)
        return rc;
    return util_exec(h, db,
                     "UPDATE channel SET head_count = head_count + 1, member_version = ?"
                     " WHERE id = ?",
                     "ii", member_version(h), j->channel_id);
}

int chstore_list(chatd_db *db, void *arg)
{
    struct chjob *j = arg;
    const chatd_host *h = j->cp->host;
    chatd_stmt *st =
        util_bind(h, db,
                  "SELECT c.id, c.title, c.head_count, c.last_msg_seq, cu.last_read_msg_seq,"
                  " c.version, c.kind, m.created_at"
                  " FROM channel_user cu JOIN channel c ON c.id = cu.channel_id"
                  " LEFT JOIN message m ON m.channel_id = c.id AND m.seq = c.last_msg_seq"
                  " WHERE cu.user_id = ? ORDER BY c.id",
                  "i", j->me);
    if (!st)
        return CHATD_EINTERNAL;
    json_decref(j->list);
    if (!(j->list = json_array())) {
        h->db_reset(st);
        return CHATD_ENOMEM;
    }
    int rc;
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        int64_t last = h->db_column_int(st, 3), read = h->db_column_int(st, 4);
        char at[32];
        if (!h->db_column_is_null(st, 7))
            util_time_rfc3339(h->db_column_int(st, 7), at, sizeof at);
        json_array_append_new(
            j->list,
            json_pack("{s:o, s:s, s:I, s:I, s:I, s:I, s:b, s:o}", "channelId",
                      util_channel_json(h->db_column_int(st, 0)), "title",
                      h->db_column_text(st, 1, NULL), "headCount",
                      (json_int_t)h->db_column_int(st, 2), "lastMessageSequence", (json_int_t)last,
                      "unreadCount", (json_int_t)(last > read ? last - read : 0), "version",
                      (json_int_t)h->db_column_int(st, 5), "direct",
                      strcmp(h->db_column_text(st, 6, NULL), "DIRECT") == 0, "lastMessageAt",
                      h->db_column_is_null(st, 7) ? json_null() : json_string(at)));
    }
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

int chstore_enter(chatd_db *db, void *arg)
{
    struct chjob *j = arg;
    int rc = util_channel_member(j->cp->host, db, j->channel_id, j->me, 0, &j->info);
    return rc < 0 ? rc : set_title(j, j->info.title);
}

/* Drop the members' counts of the user's channels, and channels left empty. */
static int leave_channels(const chatd_host *h, chatd_db *db, int64_t user_id, int64_t channel)
{
    int rc = util_exec(h, db,
                       "UPDATE channel SET head_count = head_count - 1, member_version = ?"
                       " WHERE id IN (SELECT channel_id FROM channel_user WHERE user_id = ?"
                       "  AND (? = 0 OR channel_id = ?))",
                       "iiii", member_version(h), user_id, channel, channel);
    if (rc == 0)
        rc = util_exec(h, db,
                       "DELETE FROM channel_user WHERE user_id = ? AND (? = 0 OR channel_id = ?)",
                       "iii", user_id, channel, channel);
    if (rc == 0) /* messages go with their channel (ON DELETE CASCADE) */
        rc = util_exec(h, db, "DELETE FROM channel WHERE head_count <= 0", "");
    return rc;
}

int chstore_quit(chatd_db *db, void *arg)
{
    struct chjob *j = arg;
    const chatd_host *h = j->cp->host;
    int rc = util_channel_member(h, db, j->channel_id, j->me, 1, NULL);
    return rc < 0 ? rc : leave_channels(h, db, j->me, j->channel_id);
}

int chstore_remove_user(chatd_db *db, int64_t user_id, void *state)
{
    struct chplug *cp = state;
    return leave_channels(cp->host, db, user_id, 0);
}

/* Each participant's NOTIFY_JOIN is stored for push with the new channel,
 * before the creator hears it was made. */
int chstore_create_notify(chatd_db *db, void *arg)
{
    struct chjob *j = arg;
    int rc = chstore_create(db, arg);
    for (size_t i = 0; i < j->n_people; i++)
        j->people[i].push_ref = 0;
    if (rc < 0 || j->existing)
        return rc;
    json_t *body = json_pack("{s:o, s:s}", "channelId", util_channel_json(j->channel_id), "title",
                             j->title ? j->title : "");
    for (size_t i = 0; rc == 0 && i < j->n_people; i++) {
        int64_t ref = body
                          ? j->cp->host->push_intent(db, 0, j->people[i].id, 0, "NOTIFY_JOIN", body)
                          : CHATD_ENOMEM;
        rc = ref < 0 ? (int)ref : 0;
        j->people[i].push_ref = ref > 0 ? ref : 0;
    }
    json_decref(body);
    return rc;
}
