/* The channel plugin: direct and group channels, membership, the active
 * channel of each WebSocket. Shared state of its files. */
#ifndef CHATD_CHANNEL_H
#define CHATD_CHANNEL_H

#include "plugin_util.h"

struct chplug {
    chatd_plugin *p;
    const chatd_host *host;
    int64_t max_members;
    int64_t max_title;
};

enum chop { OP_CREATE, OP_FETCH_CODE, OP_JOIN, OP_LIST, OP_ENTER, OP_QUIT };

struct person {
    int64_t id;
    char name[UTIL_NAME_MAX];
    int64_t push_ref; /* create: the push intent of their NOTIFY_JOIN */
};

struct chjob {
    struct chplug *cp;
    chatd_req *req;
    enum chop op;
    int64_t me;
    uint64_t conn;
    int64_t channel_id;       /* input or result */
    char code[UTIL_NAME_MAX]; /* join input, fetch-code result */
    char *title;              /* create input; result of the others */
    int direct;               /* create: participantUsername was used */
    struct person *people;    /* create: participants (names in, ids out) */
    size_t n_people;
    char bad_name[UTIL_NAME_MAX]; /* create: the participant that failed */
    int existing;                 /* create: an existing direct channel was returned */
    int is_direct;                /* fetch-code, join: refused, the channel is direct */
    struct util_member info;      /* enter */
    json_t *list;                 /* list result */
};

/* Storage jobs, one per request type (chatd_job_run). */
int chstore_create(chatd_db *db, void *arg);
/* CREATE, with a push intent of each participant's NOTIFY_JOIN. */
int chstore_create_notify(chatd_db *db, void *arg);
int chstore_fetch_code(chatd_db *db, void *arg);
int chstore_join(chatd_db *db, void *arg);
int chstore_list(chatd_db *db, void *arg);
int chstore_enter(chatd_db *db, void *arg);
int chstore_quit(chatd_db *db, void *arg);
int chstore_remove_user(chatd_db *db, int64_t user_id, void *state);

#endif
