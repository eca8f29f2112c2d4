/* The connection plugin: friends by invite code. Shared state of its files. */
#ifndef CHATD_CONNECTION_H
#define CHATD_CONNECTION_H

#include "plugin_util.h"

struct cplug {
    chatd_plugin *p;
    const chatd_host *host;
    int64_t max_per_user;
};

enum cop { OP_FETCH, OP_INVITE, OP_ACCEPT, OP_REJECT, OP_DISCONNECT };

/* One request's job: inputs set on the loop, results set by run. */
struct cjob {
    struct cplug *cp;
    chatd_req *req;
    enum cop op;
    int64_t me; /* the session's user */
    char me_name[UTIL_NAME_MAX];
    char other_name[UTIL_NAME_MAX]; /* input (accept, reject, disconnect) or result (invite) */
    char code[UTIL_NAME_MAX];       /* invite: the invitee's code */
    char status[16];                /* fetch: filter, "" for all */
    int64_t other;                  /* result: the other user's id */
    json_t *list;                   /* fetch: result rows */
    int64_t push_ref;               /* invite, accept: the push intent of the notification */
};

/* store.c: run functions of the jobs (worker thread). */
/* Storage jobs, one per request type (chatd_job_run). */
int cstore_invite(chatd_db *db, void *arg);
int cstore_answer(chatd_db *db, void *arg);
int cstore_disconnect(chatd_db *db, void *arg);
int cstore_fetch(chatd_db *db, void *arg);
/* INVITE and ACCEPT, with the push intent of what the other user is told. */
int cstore_invite_notify(chatd_db *db, void *arg);
int cstore_answer_notify(chatd_db *db, void *arg);
/* presence.c: friends' presence, with the core's online events. init() only. */
int presence_init(struct cplug *cp, int64_t grace_s);
/* The user-removal hook: counts and rows of the user's relations. */
int cstore_remove_user(chatd_db *db, int64_t user_id, void *state);

#endif
