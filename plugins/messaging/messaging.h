/* The messaging plugin: writes with a gapless per-channel sequence, history
 * and catch-up by version, edits, deletions, replies, reactions, read markers
 * and receipts, typing, live delivery and push. Shared state of its files. */
#ifndef CHATD_MESSAGING_H
#define CHATD_MESSAGING_H

#include "plugin_util.h"

#define CLIENT_ID_MAX 64
#define EMOJI_MAX 32

struct receipts;

struct mplug {
    chatd_plugin *p;
    const chatd_host *host;
    int64_t max_content;
    int64_t edit_window_ms;      /* 0: no limit */
    int64_t max_reactions;       /* distinct emoji per message */
    struct util_buckets *writes; /* per-user write rate */
    struct mcache *members;      /* member lists of busy channels (members.c) */
    int64_t entered_check_max;   /* member lists checked for all entered, at most */
    struct receipts *receipts;   /* read receipts and typing (receipts.c) */
    chatd_map *lines;            /* channel -> writes waiting for filters (hooks.c) */
};

struct mjob;

/* One request type: how it is read, run and answered. */
struct mop {
    const char *type;
    int flags; /* CHATD_JOB_READ or CHATD_JOB_WRITE */
    /* Fill j from msg: NULL, or what is wrong (*code set when not BAD_REQUEST). */
    const char *(*parse)(struct mjob *j, const json_t *msg, chatd_error_code *code);
    chatd_job_run run;
    /* After run succeeded, on the loop: answer and tell the others. */
    void (*answer)(struct mjob *j);
};

struct mjob {
    struct mplug *mp;
    const struct mop *op;
    chatd_req *req;
    int64_t me;
    uint64_t conn;
    char me_name[UTIL_NAME_MAX];
    int64_t channel_id;
    int64_t seq;   /* the message; write: result; read-ack: input */
    char *content; /* write, edit: input; also the result's */
    char client_id[CLIENT_ID_MAX + 1];
    int has_client_id;
    int64_t reply_to; /* write: 0 for none */
    char emoji[EMOJI_MAX + 1];
    int on;             /* react */
    int changed;        /* edit, delete, react, read-ack: something changed */
    int64_t version;    /* the result's version */
    int64_t head_count; /* read-ack: the channel's member count */
    int64_t created_ms, edited_ms;
    int duplicate;              /* write: a retry of a stored message */
    char author[UTIL_NAME_MAX]; /* edit: the author's name */
    /* write: the other members, for push, in the arrays push_absent takes
     * (filled by the worker, so the loop hands them on as they are); the
     * names point into `members`, which the job holds a reference of */
    struct members *members;
    int64_t *member_ids;
    const char **member_name_ptrs;
    size_t n_members;
    /* fetch and sync */
    int64_t before, after, since, limit;
    int has_more;
    json_t *list; /* fetch, sync, markers: the result */
    json_t *note; /* write: the NOTIFY_MESSAGE, made by the worker */
    /* write, edit with filters: waiting in the channel's line for its verdict */
    struct mjob *line_next;
    int filtered;                 /* the verdict came */
    int rejected;                 /* and it was a rejection: */
    chatd_error_code reject_code; /* the error to answer */
    char *reject_message;
    int64_t push_ref; /* write: its push intent, or 0 */
    /* write: the version of the channel's member list whose other members
     * were all entered on this node when it was submitted, or 0; a write
     * whose transaction finds the same version needs no push intent */
    int64_t entered_version;
    const char *problem; /* run failed: what to tell (static text), or NULL */
};

/* messaging.c: hand a job to the store (answering it when that fails), or
 * free it. */
void messaging_submit(struct mjob *j);
void messaging_job_free(struct mjob *j);

/* hooks.c: the filters of other plugins, and the after-commit event. */
int hooks_init(struct mplug *mp);
void hooks_free(struct mplug *mp);
/* Queue a write or edit for the filters (type: its message type); it goes
 * on to the store, or is answered, in its channel's order. 0 or CHATD_ENOMEM. */
int hooks_filter(struct mjob *j, const char *type);
/* After the commit: CHATD_EVENT_MESSAGE_STORED of kind, extra fields (taken,
 * may be NULL) merged into its body. */
void hooks_stored(struct mjob *j, const char *kind, json_t *extra);

/* Storage jobs (chatd_job_run), in store.c and history.c. */
int mstore_write(chatd_db *db, void *arg);
/* batch.c: mstore_write of n jobs at once (chatd_job_run_batch). */
int mstore_write_batch(chatd_db *db, void *const *args, int *status, size_t n);
/* After a write's rows: the members for push and the NOTIFY_MESSAGE, as
 * of the channel's member_version; 1 when a push intent is wanted, 0 not,
 * or an error. mstore_write_tail then stores that intent. */
int mstore_write_note(struct mjob *j, chatd_db *db, int64_t member_version);
int mstore_write_tail(struct mjob *j, chatd_db *db, int64_t member_version);
int mstore_read_ack(chatd_db *db, void *arg);
/* batch_read.c: mstore_read_ack of n jobs at once (chatd_job_run_batch). */
int mstore_read_ack_batch(chatd_db *db, void *const *args, int *status, size_t n);
int mstore_edit(chatd_db *db, void *arg);
int mstore_delete(chatd_db *db, void *arg);
int mstore_react(chatd_db *db, void *arg);
int mstore_fetch(chatd_db *db, void *arg);
int mstore_sync(chatd_db *db, void *arg);
int mstore_markers(chatd_db *db, void *arg);
int mstore_check_member(chatd_db *db, void *arg);
int mstore_remove_user(chatd_db *db, int64_t user_id, void *state);

/* receipts.c: NOTIFY_READ coalesced per member and channel, NOTIFY_TYPING
 * limited per user and channel. Loop thread. */
struct receipt_limits {
    int64_t read_ms;     /* read_notify_interval_ms */
    int64_t read_rate;   /* read_notify_channel_rate: NOTIFY_READ per second per channel */
    int64_t typing_ms;   /* typing_interval_ms */
    int64_t typing_rate; /* typing_channel_rate: NOTIFY_TYPING per second per channel */
};
struct receipts *receipts_new(struct mplug *mp, const struct receipt_limits *lim);
void receipts_free(struct receipts *r);
/* A member's marker moved to seq (from WebSocket conn) in a channel of
 * members: tell the others. */
void receipts_read(struct receipts *r, int64_t channel_id, int64_t members, int64_t user_id,
                   const char *username, uint64_t conn, int64_t seq);
/* A member types in the channel: tell the others, at most once per interval. */
void receipts_typing(struct receipts *r, int64_t channel_id, int64_t user_id, const char *username,
                     uint64_t conn);
/* Whether a TYPING now would be told (so it is worth checking the membership). */
int receipts_typing_due(struct receipts *r, int64_t channel_id, int64_t user_id);

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
int64_t members_version(const struct members *m);
/* Loop thread: the version of the channel's kept list when it has at most
 * max members and every one but me is entered(), else 0. */
int64_t mcache_all_entered(struct mcache *c, int64_t channel_id, int64_t me, size_t max,
                           int (*entered)(int64_t user_id, int64_t channel_id));
/* The members other than `me` into ids and names (room for members_count). */
size_t members_others(const struct members *m, int64_t me, int64_t *ids, const char **names);

#endif
