/* SQL of the admin plugin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

static int add_id(struct ajob *j, int64_t id)
{
    if (j->n_ids == j->ids_at) {
        size_t at = j->ids_at ? 2 * j->ids_at : 16;
        int64_t *n = realloc(j->ids, at * sizeof *n);
        if (!n)
            return CHATD_ENOMEM;
        j->ids = n;
        j->ids_at = at;
    }
    j->ids[j->n_ids++] = id;
    return 0;
}

int astore_users(chatd_db *db, void *arg)
{
    struct ajob *j = arg;
    const chatd_host *h = j->a->host;
    json_decref(j->list);
    j->n_ids = 0;
    if (!(j->list = json_array()))
        return CHATD_ENOMEM;
    /* LIKE is caseless on both dialects (SQLite's for ASCII, MariaDB's by
     * the column's collation), as usernames are. The order is the same on
     * both: the lower-cased names bytewise (SQLite's NOCASE column is that). */
    int sqlite = strcmp(h->db_dialect(db), "sqlite") == 0;
    chatd_stmt *st = util_bind(
        h, db,
        sqlite ? "SELECT id, username, created_at, banned FROM message_user"
                 " WHERE username LIKE ? ESCAPE '!' ORDER BY username LIMIT ?"
               : "SELECT id, username, created_at, banned FROM message_user"
                 " WHERE username LIKE ? ESCAPE '!' ORDER BY LOWER(username) COLLATE utf8mb4_bin"
                 " LIMIT ?",
        "si", j->pattern, j->limit);
    if (!st)
        return CHATD_EINTERNAL;
    int rc;
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        char at[32];
        util_time_rfc3339(h->db_column_int(st, 2) * 1000, at, sizeof at);
        json_t *u = json_pack("{s:s, s:I, s:s, s:b}", "username", h->db_column_text(st, 1, NULL),
                              "userId", (json_int_t)h->db_column_int(st, 0), "createdAt", at,
                              "banned", h->db_column_int(st, 3) != 0);
        if (!u || json_array_append_new(j->list, u) < 0 || add_id(j, h->db_column_int(st, 0)) < 0) {
            rc = CHATD_ENOMEM;
            break;
        }
    }
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

/* The user of j->username (caseless): j->user_id and the stored spelling. */
static int find_user(struct ajob *j, chatd_db *db)
{
    const chatd_host *h = j->a->host;
    chatd_stmt *st = util_bind(h, db, "SELECT id, username FROM message_user WHERE username = ?",
                               "s", j->username);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW) {
        j->user_id = h->db_column_int(st, 0);
        const char *name = h->db_column_text(st, 1, NULL);
        if (name && strlen(name) < sizeof j->username)
            memcpy(j->username, name, strlen(name) + 1);
    }
    h->db_reset(st);
    return rc == CHATD_ROW ? 0 : rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
}

int astore_find_user(chatd_db *db, void *arg)
{
    return find_user(arg, db);
}

int astore_set_banned(chatd_db *db, void *arg)
{
    struct ajob *j = arg;
    int rc = find_user(j, db);
    if (rc < 0)
        return rc;
    return util_exec(j->a->host, db, "UPDATE message_user SET banned = ? WHERE id = ?", "ii",
                     (int64_t)(j->op == OP_BAN), j->user_id);
}

int astore_delete_channel(chatd_db *db, void *arg)
{
    struct ajob *j = arg;
    const chatd_host *h = j->a->host;
    j->n_ids = 0;
    /* The channel row's lock first (MariaDB): a JOIN or a write waits for
     * the delete, so the members read next are all there are. */
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT id FROM channel WHERE id = ?%s", util_for_update(h, db));
    int64_t found = 0;
    int rc = util_int(h, db, &found, sql, "i", j->channel_id);
    if (rc < 0)
        return rc;
    chatd_stmt *st =
        util_bind(h, db, "SELECT user_id FROM channel_user WHERE channel_id = ? ORDER BY user_id",
                  "i", j->channel_id);
    if (!st)
        return CHATD_EINTERNAL;
    while ((rc = h->db_step(st)) == CHATD_ROW)
        if (add_id(j, h->db_column_int(st, 0)) < 0) {
            rc = CHATD_ENOMEM;
            break;
        }
    h->db_reset(st);
    if (rc != CHATD_DONE)
        return rc;
    /* Its members, messages and their reactions go with it (ON DELETE
     * CASCADE, on both dialects). */
    return util_exec(h, db, "DELETE FROM channel WHERE id = ?", "i", j->channel_id);
}

int astore_stats(chatd_db *db, void *arg)
{
    struct ajob *j = arg;
    const chatd_host *h = j->a->host;
    int rc = util_int(h, db, &j->users, "SELECT COUNT(*) FROM message_user", "");
    if (rc == 0)
        rc = util_int(h, db, &j->channels, "SELECT COUNT(*) FROM channel", "");
    if (rc == 0)
        rc = util_int(h, db, &j->messages, "SELECT COUNT(*) FROM message WHERE deleted = 0", "");
    return rc;
}
