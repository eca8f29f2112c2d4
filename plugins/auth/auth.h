/* The auth plugin: register, login, logout, unregister, and the user's
 * invite code. Shared state of its files. */
#ifndef CHATD_AUTH_H
#define CHATD_AUTH_H

#include <chatd/plugin.h>
#include <stdint.h>

#include "ratelimit.h"

struct auth {
    chatd_plugin *p;
    const chatd_host *host;
    uint32_t t_cost, m_cost, parallelism;
    int64_t username_min, username_max, password_min, password_max;
    struct ratelimit *by_user, *by_addr;  /* this node's counts */
    int64_t max_user, max_addr, window_s; /* also for the counts shared by all nodes */
    char *dummy_hash; /* verified against for unknown users: same cost, no oracle */
};

/* users.c: storage jobs on message_user */
struct user_job {
    struct auth *a;
    chatd_http *http; /* the HTTP request being answered, or NULL */
    chatd_req *req;   /* the WebSocket request being answered, or NULL */
    int64_t user_id;
    char username[64];
    char *password; /* cleansed and freed with the job */
    char *hash;     /* encoded argon2id */
    char invite_code[16];
    int verified;
    int banned; /* message_user.banned (admin API) */
    char token[64];
    char user_key[96], addr_key[96]; /* names of the shared failure counters */
};

struct user_job *user_job_new(struct auth *a);
void user_job_free(struct user_job *j);
int users_run_insert(chatd_db *db, void *arg); /* username, hash -> user_id, invite_code */
int users_run_lookup(chatd_db *db, void *arg); /* username -> user_id, username, hash, banned */
int users_run_banned(chatd_db *db, void *arg); /* user_id -> banned */
int users_run_delete(chatd_db *db, void *arg); /* user_id */
int users_run_invite(chatd_db *db, void *arg); /* user_id -> invite_code */

/* Password hashing (CPU jobs). */
int auth_run_hash(chatd_db *db, void *arg);   /* password -> hash */
int auth_run_verify(chatd_db *db, void *arg); /* password, hash -> verified */

#endif
