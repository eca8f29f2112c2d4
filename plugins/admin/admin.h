/* The admin plugin: the operators' API under /api/v1/admin/ (PROTOCOL.md
 * section 7.1). Shared state of its files. */
#ifndef CHATD_ADMIN_H
#define CHATD_ADMIN_H

#include "plugin_util.h"

#define ADMIN_LIMIT_DEFAULT 50
#define ADMIN_LIMIT_MAX 1000

struct admin {
    chatd_plugin *p;
    const chatd_host *host;
};

enum admin_op { OP_USERS, OP_BAN, OP_UNBAN, OP_LOGOUT, OP_DELETE_CHANNEL, OP_STATS };

struct ajob {
    struct admin *a;
    chatd_http *http;
    enum admin_op op;
    /* users: the LIKE pattern of the prefix (escaped with '!') and the limit */
    char pattern[2 * UTIL_NAME_MAX + 2];
    int64_t limit;
    json_t *list;  /* users: the entries, "online" still to come */
    int64_t *ids;  /* users: their ids; delete: the channel's members */
    size_t n_ids;  /* how many of ids */
    size_t ids_at; /* room in ids */
    /* ban, unban, logout: the name given, then as stored, and the user */
    char username[UTIL_NAME_MAX];
    int64_t user_id;
    int64_t channel_id;
    int64_t users, channels, messages; /* stats */
};

/* Storage jobs (chatd_job_run), one per operation. */
int astore_users(chatd_db *db, void *arg);
int astore_set_banned(chatd_db *db, void *arg); /* OP_BAN or OP_UNBAN */
int astore_find_user(chatd_db *db, void *arg);
int astore_delete_channel(chatd_db *db, void *arg);
int astore_stats(chatd_db *db, void *arg);

#endif
