/* SQL on message_user and password hashing: the auth plugin's jobs. */
#include <argon2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "plugin_util.h"

#define SALT_LEN 16
#define HASH_LEN 32

struct user_job *user_job_new(struct auth *a)
{
    struct user_job *j = calloc(1, sizeof *j);
    if (j)
        j->a = a;
    return j;
}

void user_job_free(struct user_job *j)
{
    if (!j)
        return;
    if (j->password) {
        /* explicit_bzero is not optimised away like memset before free */
        explicit_bzero(j->password, strlen(j->password));
        free(j->password);
    }
    free(j->hash);
    explicit_bzero(j->token, sizeof j->token);
    free(j);
}

/* Step a statement that returns no rows: 0, or the driver's error. */
static int exec_stmt(const chatd_host *h, chatd_stmt *st)
{
    if (!st)
        return CHATD_EINTERNAL;
    int rc = h->db_step(st);
    return rc == CHATD_DONE ? 0 : rc < 0 ? rc : CHATD_EINTERNAL;
}

int users_run_insert(chatd_db *db, void *arg)
{
    struct user_job *j = arg;
    const chatd_host *h = j->a->host;
    chatd_stmt *st = h->db_prepare(db, "SELECT 1 FROM message_user WHERE username = ?");
    if (!st)
        return CHATD_EINTERNAL;
    h->db_bind_text(st, 1, j->username, strlen(j->username));
    int rc = h->db_step(st);
    h->db_reset(st);
    if (rc == CHATD_ROW)
        return CHATD_ECONFLICT;
    if (rc < 0)
        return rc;
    /* The username is free; an invite code clash is the only conflict left. */
    for (int attempt = 0; attempt < 5; attempt++) {
        util_invite_code(h, j->invite_code);
        st = h->db_prepare(db, "INSERT INTO message_user (username, password_hash, invite_code,"
                               " connection_count, created_at) VALUES (?, ?, ?, 0, ?)");
        if (!st)
            return CHATD_EINTERNAL;
        h->db_bind_text(st, 1, j->username, strlen(j->username));
        h->db_bind_text(st, 2, j->hash, strlen(j->hash));
        h->db_bind_text(st, 3, j->invite_code, strlen(j->invite_code));
        h->db_bind_int(st, 4, h->now_ms() / 1000);
        rc = exec_stmt(h, st);
        if (rc != CHATD_ECONFLICT)
            break;
    }
    if (rc == 0)
        j->user_id = h->db_last_insert_id(db);
    return rc;
}

int users_run_lookup(chatd_db *db, void *arg)
{
    struct user_job *j = arg;
    const chatd_host *h = j->a->host;
    chatd_stmt *st = h->db_prepare(
        db, "SELECT id, username, password_hash, banned FROM message_user WHERE username = ?");
    if (!st)
        return CHATD_EINTERNAL;
    h->db_bind_text(st, 1, j->username, strlen(j->username));
    int rc = h->db_step(st);
    free(j->hash);
    j->hash = NULL;
    j->user_id = 0;
    j->banned = 0;
    if (rc == CHATD_ROW) {
        j->user_id = h->db_column_int(st, 0);
        j->banned = h->db_column_int(st, 3) != 0;
        /* the stored spelling of the name, whatever case the client typed */
        snprintf(j->username, sizeof j->username, "%s", h->db_column_text(st, 1, NULL));
        j->hash = strdup(h->db_column_text(st, 2, NULL));
        h->db_reset(st);
        return j->hash ? 0 : CHATD_ENOMEM;
    }
    h->db_reset(st);
    return rc == CHATD_DONE ? 0 : rc;
}

int users_run_banned(chatd_db *db, void *arg)
{
    struct user_job *j = arg;
    int64_t banned = 0;
    int rc = util_int(j->a->host, db, &banned, "SELECT banned FROM message_user WHERE id = ?", "i",
                      j->user_id);
    j->banned = rc == 0 && banned != 0;
    return rc == CHATD_ENOTFOUND ? 0 : rc; /* removed meanwhile: the session is as dead */
}

int users_run_delete(chatd_db *db, void *arg)
{
    struct user_job *j = arg;
    const chatd_host *h = j->a->host;
    /* Every plugin's rows about the user go in this same transaction. */
    int hook = h->db_user_removing(db, j->user_id);
    if (hook < 0)
        return hook;
    chatd_stmt *st = h->db_prepare(db, "DELETE FROM message_user WHERE id = ?");
    if (!st)
        return CHATD_EINTERNAL;
    h->db_bind_int(st, 1, j->user_id);
    int rc = exec_stmt(h, st);
    if (rc == 0 && h->db_changes(db) == 0)
        return CHATD_ENOTFOUND;
    return rc;
}

int users_run_invite(chatd_db *db, void *arg)
{
    struct user_job *j = arg;
    const chatd_host *h = j->a->host;
    chatd_stmt *st = h->db_prepare(db, "SELECT invite_code FROM message_user WHERE id = ?");
    if (!st)
        return CHATD_EINTERNAL;
    h->db_bind_int(st, 1, j->user_id);
    int rc = h->db_step(st);
    if (rc == CHATD_ROW)
        snprintf(j->invite_code, sizeof j->invite_code, "%s", h->db_column_text(st, 0, NULL));
    h->db_reset(st);
    return rc == CHATD_ROW ? 0 : rc == CHATD_DONE ? CHATD_ENOTFOUND : rc;
}

int auth_run_hash(chatd_db *db, void *arg)
{
    struct user_job *j = arg;
    struct auth *a = j->a;
    (void)db;
    unsigned char salt[SALT_LEN];
    if (a->host->random_bytes(salt, sizeof salt) < 0)
        return CHATD_EINTERNAL;
    size_t len =
        argon2_encodedlen(a->t_cost, a->m_cost, a->parallelism, SALT_LEN, HASH_LEN, Argon2_id);
    if (!(j->hash = malloc(len)))
        return CHATD_ENOMEM;
    int rc = argon2id_hash_encoded(a->t_cost, a->m_cost, a->parallelism, j->password,
                                   strlen(j->password), salt, SALT_LEN, HASH_LEN, j->hash, len);
    return rc == ARGON2_OK ? 0 : CHATD_EINTERNAL;
}

int auth_run_verify(chatd_db *db, void *arg)
{
    struct user_job *j = arg;
    (void)db;
    const char *hash = j->hash ? j->hash : j->a->dummy_hash;
    /* An unknown user costs the same as a wrong password. */
    j->verified =
        argon2id_verify(hash, j->password, strlen(j->password)) == ARGON2_OK && j->hash != NULL;
    return 0;
}
