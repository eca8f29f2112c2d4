/* SQL of the connection plugin: one relation per unordered pair, lower id first. */
#include <stdio.h>
#include <string.h>

#include "connection.h"

#define LO(a, b) ((a) < (b) ? (a) : (b))
#define HI(a, b) ((a) < (b) ? (b) : (a))

struct relation {
    char status[16];
    int64_t inviter;
};

/* The pair's relation, row-locked where the dialect needs it. */
static int relation_get(struct cjob *j, chatd_db *db, struct relation *r)
{
    const chatd_host *h = j->cp->host;
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT status, inviter_user_id FROM user_connection"
             " WHERE user_a_id = ? AND user_b_id = ?%s",
             util_for_update(h, db));
    chatd_stmt *st = util_bind(h, db, sql, "ii", LO(j->me, j->other), HI(j->me, j->other));
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW) {
        snprintf(r->status, sizeof r->status, "%s", h->db_column_text(st, 0, NULL));
        r->inviter = h->db_column_int(st, 1);
    }
    h->db_reset(st);
    return rc == CHATD_ROW ? 0 : rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
}

static int relation_set(struct cjob *j, chatd_db *db, const char *status)
{
    return util_exec(j->cp->host, db,
                     "UPDATE user_connection SET status = ?, updated_at = ?"
                     " WHERE user_a_id = ? AND user_b_id = ?",
                     "siii", status, j->cp->host->now_ms(), LO(j->me, j->other),
                     HI(j->me, j->other));
}

/* Both users' accepted-connection counts move together, in this transaction. */
static int counts_add(struct cjob *j, chatd_db *db, int64_t delta)
{
    return util_exec(j->cp->host, db,
                     "UPDATE message_user SET connection_count = connection_count + ?"
                     " WHERE id IN (?, ?)",
                     "iii", delta, j->me, j->other);
}

static int other_by_name(struct cjob *j, chatd_db *db)
{
    return util_int(j->cp->host, db, &j->other, "SELECT id FROM message_user WHERE username = ?",
                    "s", j->other_name);
}

int cstore_invite(chatd_db *db, void *arg)
{
    struct cjob *j = arg;
    const chatd_host *h = j->cp->host;
    chatd_stmt *st = util_bind(h, db, "SELECT id, username FROM message_user WHERE invite_code = ?",
                               "s", j->code);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    if (rc == CHATD_ROW) {
        j->other = h->db_column_int(st, 0);
        snprintf(j->other_name, sizeof j->other_name, "%s", h->db_column_text(st, 1, NULL));
    }
    h->db_reset(st);
    if (rc != CHATD_ROW)
        return rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
    if (j->other == j->me)
        return CHATD_EINVAL;
    struct relation r;
    int64_t now = h->now_ms();
    rc = relation_get(j, db, &r);
    if (rc == CHATD_ENOTFOUND)
        return util_exec(h, db,
                         "INSERT INTO user_connection (user_a_id, user_b_id, inviter_user_id,"
                         " status, created_at, updated_at) VALUES (?, ?, ?, 'PENDING', ?, ?)",
                         "iiiii", LO(j->me, j->other), HI(j->me, j->other), j->me, now, now);
    if (rc < 0)
        return rc;
    if (strcmp(r.status, "DISCONNECTED") != 0)
        return CHATD_ECONFLICT;
    return util_exec(h, db,
                     "UPDATE user_connection SET status = 'PENDING', inviter_user_id = ?,"
                     " updated_at = ? WHERE user_a_id = ? AND user_b_id = ?",
                     "iiii", j->me, now, LO(j->me, j->other), HI(j->me, j->other));
}

/* Accept or reject: only the invitee, only while PENDING. */
int cstore_answer(chatd_db *db, void *arg)
{
    struct cjob *j = arg;
    struct relation r;
    int rc = other_by_name(j, db);
    if (rc == 0)
        rc = relation_get(j, db, &r);
    if (rc < 0)
        return rc;
    if (strcmp(r.status, "PENDING") != 0)
        return CHATD_ECONFLICT;
    if (r.inviter == j->me)
        return CHATD_EFORBIDDEN;
    if (j->op == OP_REJECT)
        return relation_set(j, db, "REJECTED");
    int64_t full = 0;
    rc = util_int(j->cp->host, db, &full,
                  "SELECT COUNT(*) FROM message_user WHERE id IN (?, ?) AND connection_count >= ?",
                  "iii", j->me, j->other, j->cp->max_per_user);
    if (rc < 0)
        return rc;
    if (full > 0)
        return CHATD_ELIMIT;
    rc = relation_set(j, db, "ACCEPTED");
    return rc < 0 ? rc : counts_add(j, db, 1);
}

int cstore_disconnect(chatd_db *db, void *arg)
{
    struct cjob *j = arg;
    struct relation r;
    int rc = other_by_name(j, db);
    if (rc == 0)
        rc = relation_get(j, db, &r);
    if (rc < 0)
        return rc;
    if (strcmp(r.status, "ACCEPTED") == 0) {
        rc = relation_set(j, db, "DISCONNECTED");
        return rc < 0 ? rc : counts_add(j, db, -1);
    }
    if (strcmp(r.status, "REJECTED") == 0)
        return r.inviter == j->me ? relation_set(j, db, "DISCONNECTED") : CHATD_EFORBIDDEN;
    return CHATD_ECONFLICT;
}

int cstore_fetch(chatd_db *db, void *arg)
{
    struct cjob *j = arg;
    const chatd_host *h = j->cp->host;
    const char *sql = "SELECT u.username, c.status, inv.username FROM user_connection c"
                      " JOIN message_user u ON u.id = CASE WHEN c.user_a_id = ? THEN c.user_b_id"
                      "                                    ELSE c.user_a_id END"
                      " JOIN message_user inv ON inv.id = c.inviter_user_id"
                      " WHERE (c.user_a_id = ? OR c.user_b_id = ?) AND (? = '' OR c.status = ?)"
                      " ORDER BY u.username";
    chatd_stmt *st = util_bind(h, db, sql, "iiiss", j->me, j->me, j->me, j->status, j->status);
    if (!st)
        return CHATD_EINTERNAL;
    json_decref(j->list);
    if (!(j->list = json_array())) {
        h->db_reset(st);
        return CHATD_ENOMEM;
    }
    int rc;
    while ((rc = h->db_step(st)) == CHATD_ROW)
        json_array_append_new(j->list, json_pack("{s:s, s:s, s:s}", "username",
                                                 h->db_column_text(st, 0, NULL), "status",
                                                 h->db_column_text(st, 1, NULL), "invitedBy",
                                                 h->db_column_text(st, 2, NULL)));
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

int cstore_remove_user(chatd_db *db, int64_t user_id, void *state)
{
    struct cplug *cp = state;
    const chatd_host *h = cp->host;
    int rc =
        util_exec(h, db,
                  "UPDATE message_user SET connection_count = connection_count - 1"
                  " WHERE id IN (SELECT CASE WHEN user_a_id = ? THEN user_b_id"
                  "                          ELSE user_a_id END"
                  "              FROM user_connection"
                  "              WHERE (user_a_id = ? OR user_b_id = ?) AND status = 'ACCEPTED')",
                  "iii", user_id, user_id, user_id);
    if (rc < 0)
        return rc;
    return util_exec(h, db, "DELETE FROM user_connection WHERE user_a_id = ? OR user_b_id = ?",
                     "ii", user_id, user_id);
}

/* What the other user is told (ASK_INVITE, NOTIFY_ACCEPT) is stored for push
 * with the change, before the requester hears it went through. */
static int with_intent(struct cjob *j, chatd_db *db, int rc, const char *type)
{
    j->push_ref = 0;
    if (rc < 0 || !type)
        return rc;
    json_t *body = json_pack("{s:s}", "username", j->me_name);
    int64_t ref = body ? j->cp->host->push_intent(db, 0, j->other, 0, type, body) : CHATD_ENOMEM;
    json_decref(body);
    if (ref < 0)
        return (int)ref;
    j->push_ref = ref;
    return 0;
}

int cstore_invite_notify(chatd_db *db, void *arg)
{
    return with_intent(arg, db, cstore_invite(db, arg), "ASK_INVITE");
}

int cstore_answer_notify(chatd_db *db, void *arg)
{
    struct cjob *j = arg;
    return with_intent(j, db, cstore_answer(db, arg), j->op == OP_ACCEPT ? "NOTIFY_ACCEPT" : NULL);
}
