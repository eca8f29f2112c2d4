/*
 * The MariaDB driver's connection and statements, shared by its files:
 * db_mariadb.c (connections, statements) and db_mariadb_txn.c
 * (transactions, statements put off until the commit, commit positions).
 */
#ifndef CHATD_STORE_DB_MARIADB_H
#define CHATD_STORE_DB_MARIADB_H

#include <mysql.h>
#include <stdint.h>

#include "db.h"
#include "hmap.h"

struct settings;

struct my_db {
    struct chatd_db base;
    MYSQL *h;
    const struct settings *s;
    hmap *stmts; /* sql text -> struct my_stmt */
    int broken;  /* the server went away: reconnect before the next transaction */
    int64_t last_id, changes;
    int64_t id_step;  /* a multi-row INSERT's ids are this far apart; 0: maybe not consecutive */
    const char *host; /* a replica's (open_at), else NULL: the settings' server */
    int port;
    int track_gtid;     /* the server reports each commit's GTID (session tracking) */
    char last_gtid[64]; /* of the last commit, "" before any */
    /* Transactions (db_mariadb_txn.c): a write transaction's commit opens
     * the next one in the same round trip (COMMIT AND CHAIN). */
    int in_txn;         /* between begin and commit or rollback */
    int write_txn;      /* the one begun is a write transaction */
    int chained;        /* a chained transaction is open, nothing run in it yet */
    int chain_fresh;    /* the transaction begun is the chained one, nothing run yet */
    int64_t chained_us; /* when the commit that chained it answered */
    /* Statements of the transaction run later (step_later): with the next
     * statement, or the commit, in its round trip. */
    char *later;
    size_t later_len, later_cap;
};

#define MY(db) ((struct my_db *)(db))

struct my_col {
    char *buf;
    unsigned long cap, len;
    my_bool is_null, error;
};

struct my_stmt {
    struct chatd_stmt base;
    MYSQL_STMT *st;
    char *sql;
    unsigned n_params, n_cols;
    MYSQL_BIND *params;
    char **param_bufs; /* owned copies of bound text */
    MYSQL_BIND *cols;
    struct my_col *col;
    int executed; /* executed since the last reset */
};

#define MYS(st) ((struct my_stmt *)(st))

/* An error of the server or the library as a CHATD_E* code; a lost server
 * marks the connection broken. */
int my_map(struct my_db *d, unsigned err, const char *msg);

/* Run sql (a script of several statements too), its results drained. */
int my_query(struct my_db *d, const char *sql);

/* Reconnect a connection that lost its server; statements die with it. */
int my_revive(struct my_db *d);

/* Before a statement: one run outside a transaction is not to join a
 * chained one, which is committed (empty) first; in a transaction, the
 * statements put off until now run first. *first (first may be NULL): the
 * statement is the first of a chained transaction (for my_first_error). */
int my_ready(struct my_db *d, int *first);

int my_step(chatd_stmt *stmt);
/* A statement without rows, in a transaction: put off until the next
 * statement or the commit, whose round trip it shares (its parameters as
 * literals in the text); CHATD_DONE, its error comes with that. Outside a
 * transaction it runs now. */
int my_step_later(chatd_stmt *stmt);

/* A lost connection's error for the first statement of a chained
 * transaction: the batch is to be run again (CHATD_EBUSY) on a new one. */
int my_first_error(struct my_db *d, int rc, int first);

int my_begin(chatd_db *db, int write);
int my_commit(chatd_db *db);
int my_rollback(chatd_db *db);
void my_commit_pos(chatd_db *db, char *buf, size_t len);
int my_wait_pos(chatd_db *db, const char *pos, int64_t timeout_ms);

#endif
