/*
 * Configuration: the libconfig file, --set overrides, validation against the
 * schema of known settings, and the parsed values the core runs with.
 * Loop thread, at start-up only.
 */
#ifndef CHATD_CONFIG_H
#define CHATD_CONFIG_H

#include <stdint.h>
#include <jansson.h>

#include "chatd/plugin.h"

#define CONFIG_MAX_ORIGINS 32

struct settings {
    /* server */
    char *listen; /* "host:port" */
    char *data_dir;
    int64_t max_connections;
    int64_t max_connections_per_addr;
    int64_t shutdown_timeout;
    char *plugin_dir; /* "" = built-in default */
    char *sql_dir;
    /* http */
    int64_t http_max_head;
    int64_t http_max_body;
    int64_t http_max_headers;
    int64_t http_keepalive_timeout;
    char *web_root;
    char **allowed_origins; /* NULL-terminated; empty = any origin */
    char **trusted_proxies; /* peers whose X-Forwarded-For names the client */
    /* ws */
    int64_t ws_max_message;
    int64_t ws_ping_interval;
    int64_t ws_idle_timeout;
    int64_t ws_handshake_timeout;
    int64_t ws_max_outbuf;
    int64_t ws_rate; /* messages per second per WebSocket */
    int64_t ws_burst;
    int64_t ws_max_per_user; /* WebSockets per user on this node */
    /* session */
    int64_t session_end_confirm_ms;
    int64_t session_ttl;
    char *session_backend;
    /* storage */
    int64_t storage_readers;
    int64_t storage_cpu_workers;
    int64_t storage_batch_max;
    int64_t storage_batch_wait_us;
    int64_t storage_retries;
    char *sqlite_path;
    char *sqlite_synchronous;
    int64_t sqlite_busy_timeout;
    /* mariadb */
    char *mariadb_host;
    int64_t mariadb_port;
    char *mariadb_user;
    char *mariadb_password;
    char *mariadb_database;
    char *mariadb_socket;
    int64_t mariadb_connect_timeout;
    int64_t mariadb_io_timeout;
    int64_t mariadb_writers;
    int64_t mariadb_chain_ms; /* COMMIT AND CHAIN: the next batch within this skips START */
    char **mariadb_replicas;  /* "host:port" of read replicas; empty: reads on the primary */
    int64_t mariadb_max_replica_lag_ms;
    int64_t mariadb_replica_wait_ms;
    /* redis */
    char *redis_host;
    int64_t redis_port;
    char *redis_prefix;
    int64_t redis_reconnect_max_ms;
    int64_t redis_presence_ttl;
    int64_t redis_entered_cache_ms;
    int64_t redis_entered_cache_slots;
    char **redis_sentinels; /* "host:port" of Sentinels; set: they name the master */
    char *redis_master_name;
    /* tls: with cert and key the listener speaks only TLS */
    char *tls_cert;
    char *tls_key;
    char *tls_ciphers;
    char *tls_min_version;
    /* log */
    char *log_level;
    int64_t filter_timeout_ms; /* hooks.filter_timeout_ms */
    char *log_format;          /* "text" or "json" */
    char *admin_token;         /* admin.token: "" turns the admin API off */
    char *admin_listen;        /* admin.listen: "host:port" of the admin API alone, or "" */
    char *log_file;
    /* plugins: one JSON object per entry of the plugins list */
    json_t *plugins;
    /* "file:line" of each plugin entry ("plugins.<name>") and of each of its
     * settings ("plugins.<name>.<key>"), for the messages about them */
    json_t *plugin_where;
};

/*
 * Read FILE, apply the overrides ("path=value" strings, borrowed), validate,
 * and fill *out. On error returns a negative code and writes one line naming
 * file, line and setting into err (errlen bytes).
 */
int config_load(const char *file, const char *const *overrides, int n_overrides,
                struct settings *out, char *err, size_t errlen);
/* Free what config_load allocated in s. */
void config_free(struct settings *s);

/* Print every known setting with its default, for docs and --help. */
void config_print_schema(void);
/* A reload: move into cur the settings of next that can change while chatd
 * runs and that differ (next gets the old values, for config_free); name
 * them in applied, and those that differ but need a restart in restart.
 * Returns how many were applied. */
int config_apply_live(struct settings *cur, struct settings *next, char *applied,
                      size_t applied_len, char *restart, size_t restart_len);

#endif
