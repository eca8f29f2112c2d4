/* The messaging plugin: writes with a gapless per-channel sequence, history,
 * read markers, live delivery and push. Shared state of its files. */
#ifndef CHATD_MESSAGING_H
#define CHATD_MESSAGING_H

#include "plugin_util.h"

#define CLIENT_ID_MAX 64

struct mplug {
    chatd_plugin *p;
    const chatd_host *host;
    int64_t max_content;
    struct util_buckets *writes; /* per-user write rate */
};

enum mop { OP_WRITE, OP_FETCH, OP_READ_ACK };

struct mjob {
    struct mplug *mp;
    chatd_req *req;
    enum mop op;
    int64_t me;
    uint64_t conn;
    char me_name[UTIL_NAME_MAX];
    int64_t channel_id;
    char *content;                    /* write */
    char client_id[CLIENT_ID_MAX + 1];
    int has_client_id;
    int64_t seq;                      /* write result; read-ack input; fetch: before */
    int64_t created_ms;               /* write result */
    int duplicate;                    /* write: a retry of a stored message */
    /* write: the other members, for push, in the arrays push_absent takes
     * (filled by the worker, so the loop hands them on as they are) */
    int64_t *member_ids;
    char (*member_names)[UTIL_NAME_MAX];
    const char **member_name_ptrs;
    size_t n_members;
    int64_t limit;                    /* fetch */
    json_t *list;                     /* fetch result */
};

int mstore_run(chatd_db *db, void *arg);
int mstore_remove_user(chatd_db *db, int64_t user_id, void *state);

#endif
