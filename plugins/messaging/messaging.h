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
    struct mcache *members;      /* member lists of busy channels (members.c) */
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
    char *content; /* write */
    char client_id[CLIENT_ID_MAX + 1];
    int has_client_id;
    int64_t seq;        /* write result; read-ack input; fetch: before */
    int64_t created_ms; /* write result */
    int duplicate;      /* write: a retry of a stored message */
    /* write: the other members, for push, in the arrays push_absent takes
     * (filled by the worker, so the loop hands them on as they are); the
     * names point into `members`, which the job holds a reference of */
    struct members *members;
    int64_t *member_ids;
    const char **member_name_ptrs;
    size_t n_members;
    int64_t limit; /* fetch */
    json_t *list;  /* fetch result */
};

/* Storage jobs, one per request type (chatd_job_run). */
int mstore_write(chatd_db *db, void *arg);
int mstore_fetch(chatd_db *db, void *arg);
int mstore_read_ack(chatd_db *db, void *arg);

/* members.c: lists of a channel's members checked against its member_version.
 * Lists are shared and immutable; every mcache_get is paired with one
 * mcache_release. Thread-safe. */
struct members;
struct mcache *mcache_new(size_t slots, size_t max_members, size_t min_size);
void mcache_free(struct mcache *c);
int mcache_get(struct mcache *c, const chatd_host *h, chatd_db *db, int64_t channel_id,
               int64_t version, struct members **out);
void mcache_release(struct mcache *c, struct members *m);
size_t members_count(const struct members *m);
/* The members other than `me` into ids and names (room for members_count). */
size_t members_others(const struct members *m, int64_t me, int64_t *ids, const char **names);
int mstore_remove_user(chatd_db *db, int64_t user_id, void *state);

#endif
