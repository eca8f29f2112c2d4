#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <sys/stat.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "chatd/plugin.h"
#include "config_check.h"
#include "config_schema.h"
#include "config_text.h"

static const char *const synchronous_modes[] = {"full", "normal", NULL};
static const char *const session_backends[] = {"sqlite", "mariadb", "redis", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const tls_versions[] = {"1.2", "1.3", NULL};

/* Every setting the core reads. docs/CONFIG.md describes the same list. */
const struct schema config_schema[] = {
    S_STR("server.listen", listen, "127.0.0.1:8080",
          "address and port to listen on (port 0: any free port)"),
    S_STR("server.data_dir", data_dir, "chatd-data",
          "directory for the embedded store; created if missing"),
    S_INT("server.max_connections", max_connections, 100000, 1, 10000000, "open sockets at most"),
    S_INT("server.max_connections_per_addr", max_connections_per_addr, 1024, 1, 10000000,
          "open sockets per client address"),
    S_INT("server.shutdown_timeout", shutdown_timeout, 10, 0, 3600,
          "seconds SIGTERM waits for queued work"),
    S_STR("server.plugin_dir", plugin_dir, "",
          "where plugins are looked up by name (\"\": built-in)"),
    S_STR("server.sql_dir", sql_dir, "", "where schema migrations are read from (\"\": built-in)"),
    S_INT("http.max_head_size", http_max_head, 8192, 512, 1 << 20,
          "bytes of request line plus headers"),
    S_INT("http.max_body_size", http_max_body, 65536, 0, 64 << 20, "bytes of request body"),
    S_INT("http.max_headers", http_max_headers, 64, 1, 10000, "header lines of one request"),
    S_INT("http.keepalive_timeout", http_keepalive_timeout, 60, 1, 3600,
          "seconds an idle HTTP connection stays open"),
    S_STR("http.web_root", web_root, "", "directory of static files served at / (\"\": none)"),
    {"http.allowed_origins", K_STRLIST, offsetof(struct settings, allowed_origins), NULL, 0, 0, 0,
     "Origin values allowed to open a WebSocket ([]: any)", NULL},
    {"http.trusted_proxies", K_STRLIST, offsetof(struct settings, trusted_proxies), NULL, 0, 0, 0,
     "balancer addresses whose X-Forwarded-For names the client ([]: none)", NULL},
    S_INT("ws.max_message_size", ws_max_message, 65536, 128, 64 << 20,
          "bytes of one WebSocket message"),
    S_INT("ws.ping_interval", ws_ping_interval, 30, 1, 3600,
          "seconds of silence before the server pings"),
    S_INT("ws.idle_timeout", ws_idle_timeout, 75, 1, 86400,
          "seconds of silence before the server closes"),
    S_INT("ws.handshake_timeout", ws_handshake_timeout, 10, 1, 600,
          "seconds to complete a request (the first from accept, TLS handshake included)"),
    S_INT("ws.max_outbuf", ws_max_outbuf, 4 << 20, 4096, 1LL << 32,
          "bytes queued to a client before it is closed (1008)"),
    S_INT("ws.rate_limit", ws_rate, 500, 1, 10000000,
          "messages per second a WebSocket may send (token bucket)"),
    S_INT("ws.rate_burst", ws_burst, 1000, 1, 10000000,
          "messages a WebSocket may send at once before ws.rate_limit applies"),
    S_INT("ws.max_connections_per_user", ws_max_per_user, 64, 1, 1000000,
          "WebSockets one user may hold open on a node"),
    S_INT("session.ttl", session_ttl, 86400, 1, 365LL * 86400,
          "seconds a login session lives without KEEP_ALIVE"),
    S_INT("session.end_confirm_ms", session_end_confirm_ms, 1000, 1, 60000,
          "longest wait for every node to forget an ended session before the end is answered"),
    S_ENUM("session.backend", session_backend, "sqlite", session_backends,
           "storage backend of sessions: sqlite, mariadb or redis"),
    S_INT("storage.readers", storage_readers, 2, 1, 64, "worker threads for read-only jobs"),
    S_INT("storage.cpu_workers", storage_cpu_workers, 2, 1, 64,
          "worker threads for CPU jobs (password hashing)"),
    S_INT("storage.batch_max", storage_batch_max, 128, 1, 100000,
          "write jobs committed in one transaction at most"),
    S_INT("storage.batch_wait_us", storage_batch_wait_us, 0, 0, 1000000,
          "microseconds a commit waits for more jobs"),
    S_INT("storage.retries", storage_retries, 5, 0, 100,
          "times a transaction is retried on a lock conflict"),
    S_STR("storage.sqlite.path", sqlite_path, "chatd.db",
          "SQLite file, relative to server.data_dir"),
    S_ENUM("storage.sqlite.synchronous", sqlite_synchronous, "full", synchronous_modes,
           "SQLite synchronous mode: full or normal"),
    S_INT("storage.sqlite.busy_timeout", sqlite_busy_timeout, 5000, 0, 600000,
          "milliseconds to wait on a locked database"),
    S_STR("mariadb.host", mariadb_host, "127.0.0.1", "MariaDB server address"),
    S_INT("mariadb.port", mariadb_port, 3306, 1, 65535, "MariaDB server port"),
    S_STR("mariadb.user", mariadb_user, "chatd", "MariaDB user"),
    S_STR("mariadb.password", mariadb_password, "", "MariaDB password"),
    S_STR("mariadb.database", mariadb_database, "chatd", "MariaDB database"),
    S_STR("mariadb.socket", mariadb_socket, "",
          "MariaDB Unix socket (\"\": connect by host and port)"),
    S_INT("mariadb.connect_timeout", mariadb_connect_timeout, 3, 1, 600,
          "seconds to connect to MariaDB"),
    S_INT("mariadb.io_timeout", mariadb_io_timeout, 10, 1, 3600,
          "seconds a MariaDB read or write may take"),
    S_INT("mariadb.writers", mariadb_writers, 4, 1, 64,
          "worker threads that write to MariaDB at once"),
    S_INT("mariadb.chain_ms", mariadb_chain_ms, 1000, 0, 60000,
          "ms a writer's commit keeps the next transaction open for it (0: none)"),
    {"mariadb.replicas", K_STRLIST, offsetof(struct settings, mariadb_replicas), NULL, 0, 0, 0,
     "\"host:port\" of read replicas for read-only jobs ([]: every read on the primary)", NULL},
    S_INT("mariadb.max_replica_lag_ms", mariadb_max_replica_lag_ms, 1000, 10, 3600000,
          "a replica further behind than this is skipped until it catches up"),
    S_INT("mariadb.replica_wait_ms", mariadb_replica_wait_ms, 250, 0, 60000,
          "longest wait for a replica to apply a user's own last write, else the primary reads"),
    S_STR("redis.host", redis_host, "",
          "Redis address shared by the nodes (\"\": a single node, no Redis)"),
    S_INT("redis.port", redis_port, 6379, 1, 65535, "Redis port"),
    S_STR("redis.prefix", redis_prefix, "chatd:", "prefix of every Redis key and topic"),
    S_INT("redis.reconnect_max_ms", redis_reconnect_max_ms, 5000, 100, 600000,
          "longest wait between Redis reconnection attempts"),
    S_INT("redis.presence_ttl", redis_presence_ttl, 30, 3, 3600,
          "seconds a node's presence entries live without its heartbeat"),
    S_INT("redis.entered_cache_ms", redis_entered_cache_ms, 2000, 0, 60000,
          "ms that members found entered on another node count as entered, for push intents"),
    S_INT("redis.entered_cache_slots", redis_entered_cache_slots, 16384, 0, 16777216,
          "entries of that memory (24 bytes each; 0: none)"),
    {"redis.sentinels", K_STRLIST, offsetof(struct settings, redis_sentinels), NULL, 0, 0, 0,
     "\"host:port\" of Redis Sentinels that name the master (redis.host then unused)", NULL},
    S_STR("redis.master_name", redis_master_name, "chatd",
          "the master's name at the Sentinels (redis.sentinels)"),
    S_STR("tls.cert", tls_cert, "",
          "PEM certificate (and chain); with tls.key, only https and wss (\"\": no TLS)"),
    S_STR("tls.key", tls_key, "", "PEM private key of tls.cert"),
    S_STR("tls.ciphers", tls_ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20",
          "TLS 1.2 ciphers, in OpenSSL's syntax (TLS 1.3 uses OpenSSL's AEAD suites)"),
    S_ENUM("tls.min_version", tls_min_version, "1.2", tls_versions,
           "oldest TLS version accepted: 1.2 or 1.3"),
    S_ENUM("log.level", log_level, "info", log_levels, "error, warn, info or debug"),
    S_ENUM("log.format", log_format, "text", log_formats,
           "text, or json: one object a line with time, level, module, message"),
    S_STR("log.file", log_file, "", "log file (\"\": stderr)"),
    S_INT("hooks.filter_timeout_ms", filter_timeout_ms, 2000, 1, 600000,
          "how long a message filter may take before the write fails UNAVAILABLE"),
    S_STR("admin.token", admin_token, "",
          "bearer token of the admin API (\"\": the API is off, its routes 404)"),
    S_STR("admin.listen", admin_listen, "",
          "address of the admin API alone, apart from server.listen (\"\": on server.listen)"),
};

const size_t config_schema_len = sizeof config_schema / sizeof config_schema[0];
#define N_SCHEMA config_schema_len

static const char *const top_groups[] = {"server", "http",    "ws",  "session", "storage",
                                         "log",    "admin",   "tls", "hooks",   "mariadb",
                                         "redis",  "plugins", NULL};

#define errf config_errf

/* "file:line" of a setting, or where an override came from. */
static void where(const config_setting_t *s, const char *file, char *buf, size_t len)
{
    const char *f = config_setting_source_file(s);
    unsigned line = config_setting_source_line(s);
    if (line)
        snprintf(buf, len, "%s:%u", f ? f : file, line);
    else
        snprintf(buf, len, "%s (--set)", file);
}

static const struct schema *schema_find(const char *path)
{
    for (size_t i = 0; i < N_SCHEMA; i++)
        if (strcmp(config_schema[i].path, path) == 0)
            return &config_schema[i];
    return NULL;
}

static int schema_has_prefix(const char *group_path)
{
    size_t n = strlen(group_path);
    for (size_t i = 0; i < N_SCHEMA; i++)
        if (strncmp(config_schema[i].path, group_path, n) == 0 && config_schema[i].path[n] == '.')
            return 1;
    return 0;
}

/* Reject settings the core does not know: a typo must not pass silently. */
static int check_unknown(const config_setting_t *grp, const char *prefix, const char *file,
                         char *err, size_t errlen)
{
    for (int i = 0; i < config_setting_length(grp); i++) {
        const config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
        char path[256], at[300];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", config_setting_name(s));
        if (!*prefix) {
            int ok = 0;
            for (int j = 0; top_groups[j]; j++)
                ok |= strcmp(top_groups[j], path) == 0;
            if (!ok) {
                where(s, file, at, sizeof at);
                errf(err, errlen, "%s: setting '%s': unknown setting", at, path);
                return CHATD_EINVAL;
            }
            if (strcmp(path, "plugins") == 0)
                continue;
        }
        if (config_setting_is_group(s)) {
            if (!schema_has_prefix(path)) {
                where(s, file, at, sizeof at);
                errf(err, errlen, "%s: setting '%s': unknown group", at, path);
                return CHATD_EINVAL;
            }
            if (check_unknown(s, path, file, err, errlen) < 0)
                return CHATD_EINVAL;
        } else if (!schema_find(path)) {
            where(s, file, at, sizeof at);
            errf(err, errlen, "%s: setting '%s': unknown setting", at, path);
            return CHATD_EINVAL;
        }
    }
    return 0;
}

static int read_value(const config_t *cfg, const struct schema *sc, struct settings *out,
                      const char *file, char *err, size_t errlen)
{
    char *base = (char *)out + sc->offset;
    const config_setting_t *s = config_lookup(cfg, sc->path);
    char at[300] = "";
    if (s)
        where(s, file, at, sizeof at);
    switch (sc->kind) {
    case K_INT: {
        int64_t v = sc->def_int;
        if (s) {
            int t = config_setting_type(s);
            const char *big = config_int_overflow(s);
            if (big) {
                errf(err, errlen, "%s: setting '%s': %s is out of range %lld..%lld", at, sc->path,
                     big, (long long)sc->min, (long long)sc->max);
                return CHATD_EINVAL;
            }
            if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
                errf(err, errlen, "%s: setting '%s': expected an integer", at, sc->path);
                return CHATD_EINVAL;
            }
            v = config_setting_get_int64(s);
        }
        if (config_check_range(at, sc->path, v, sc->min, sc->max, err, errlen) < 0)
            return CHATD_EINVAL;
        *(int64_t *)base = v;
        return 0;
    }
    case K_STR: {
        const char *v = sc->def_str;
        if (s) {
            if (config_setting_type(s) != CONFIG_TYPE_STRING) {
                errf(err, errlen, "%s: setting '%s': expected a string", at, sc->path);
                return CHATD_EINVAL;
            }
            v = config_setting_get_string(s);
        }
        if (config_check_choice(at[0] ? at : "(default)", sc->path, v, sc->choices, err, errlen) <
            0)
            return CHATD_EINVAL;
        if (!(*(char **)base = strdup(v)))
            return CHATD_ENOMEM;
        return 0;
    }
    case K_STRLIST: {
        int n = s ? config_setting_length(s) : 0;
        if (s && !config_setting_is_aggregate(s)) {
            errf(err, errlen, "%s: setting '%s': expected a list of strings", at, sc->path);
            return CHATD_EINVAL;
        }
        if (n > CONFIG_MAX_ORIGINS) {
            errf(err, errlen, "%s: setting '%s': at most %d entries", at, sc->path,
                 CONFIG_MAX_ORIGINS);
            return CHATD_EINVAL;
        }
        char **list = calloc((size_t)n + 1, sizeof *list);
        if (!list)
            return CHATD_ENOMEM;
        *(char ***)base = list;
        for (int i = 0; i < n; i++) {
            const char *v = config_setting_get_string_elem(s, i);
            if (!v) {
                errf(err, errlen, "%s: setting '%s': entry %d is not a string", at, sc->path, i);
                return CHATD_EINVAL;
            }
            if (!(list[i] = strdup(v)))
                return CHATD_ENOMEM;
        }
        return 0;
    }
    }
    return CHATD_EINVAL;
}

/* The setting as JSON, or NULL when some string in it is not valid UTF-8
 * (JSON cannot carry it) or memory ran out. */
static json_t *to_json(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return json_integer(config_setting_get_int64(s));
    case CONFIG_TYPE_FLOAT:
        return json_real(config_setting_get_float(s));
    case CONFIG_TYPE_BOOL:
        return json_boolean(config_setting_get_bool(s));
    case CONFIG_TYPE_STRING:
        return json_string(config_setting_get_string(s));
    case CONFIG_TYPE_GROUP: {
        json_t *o = json_object();
        for (int i = 0; o && i < config_setting_length(s); i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            json_t *v = to_json(e);
            if (!v || json_object_set_new(o, config_setting_name(e), v) < 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    default: {
        json_t *a = json_array();
        for (int i = 0; a && i < config_setting_length(s); i++) {
            json_t *v = to_json(config_setting_get_elem(s, (unsigned)i));
            if (!v || json_array_append_new(a, v) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    }
}

static int note_where(struct settings *out, const config_setting_t *p, const char *name,
                      const char *file);

static int read_plugins(const config_t *cfg, struct settings *out, const char *file, char *err,
                        size_t errlen)
{
    out->plugins = json_array();
    if (!out->plugins)
        return CHATD_ENOMEM;
    const config_setting_t *list = config_lookup(cfg, "plugins");
    if (!list)
        return 0;
    char at[300];
    where(list, file, at, sizeof at);
    if (!config_setting_is_list(list)) {
        errf(err, errlen, "%s: setting 'plugins': expected a list ( { name = ...; }, ... )", at);
        return CHATD_EINVAL;
    }
    for (int i = 0; i < config_setting_length(list); i++) {
        const config_setting_t *p = config_setting_get_elem(list, (unsigned)i);
        const char *name = NULL;
        where(p, file, at, sizeof at);
        if (!config_setting_is_group(p) || !config_setting_lookup_string(p, "name", &name) ||
            !*name) {
            errf(err, errlen, "%s: setting 'plugins.[%d]': needs name = \"...\"", at, i);
            return CHATD_EINVAL;
        }
        json_t *name_json = json_string(name);
        if (!name_json) {
            errf(err, errlen, "%s: setting 'plugins.[%d].name': not valid UTF-8", at, i);
            return CHATD_EINVAL;
        }
        json_decref(name_json);
        for (size_t j = 0; j < json_array_size(out->plugins); j++) {
            const char *other =
                json_string_value(json_object_get(json_array_get(out->plugins, j), "name"));
            if (other && strcmp(other, name) == 0) {
                errf(err, errlen, "%s: setting 'plugins.%s': plugin listed twice", at, name);
                return CHATD_EINVAL;
            }
        }
        static const char *const strkeys[] = {"path", "backend", NULL};
        for (int k = 0; strkeys[k]; k++) {
            const config_setting_t *v = config_setting_get_member(p, strkeys[k]);
            if (v && config_setting_type(v) != CONFIG_TYPE_STRING) {
                where(v, file, at, sizeof at);
                errf(err, errlen, "%s: setting 'plugins.%s.%s': expected a string", at, name,
                     strkeys[k]);
                return CHATD_EINVAL;
            }
        }
        json_t *entry = to_json(p);
        if (!entry) {
            errf(err, errlen, "%s: setting 'plugins.[%d]': a string in it is not valid UTF-8", at,
                 i);
            return CHATD_EINVAL;
        }
        json_array_append_new(out->plugins, entry);
        if (note_where(out, p, name, file) < 0)
            return CHATD_ENOMEM;
    }
    return 0;
}

/* Where the plugin's entry and each of its settings are written. */
static int note_where(struct settings *out, const config_setting_t *p, const char *name,
                      const char *file)
{
    char path[256], at[300];
    if (!out->plugin_where && !(out->plugin_where = json_object()))
        return CHATD_ENOMEM;
    where(p, file, at, sizeof at);
    snprintf(path, sizeof path, "plugins.%s", name);
    json_object_set_new(out->plugin_where, path, json_string(at));
    for (int i = 0; i < config_setting_length(p); i++) {
        const config_setting_t *e = config_setting_get_elem(p, (unsigned)i);
        where(e, file, at, sizeof at);
        snprintf(path, sizeof path, "plugins.%s.%s", name, config_setting_name(e));
        json_object_set_new(out->plugin_where, path, json_string(at));
    }
    return 0;
}

/* "file:line" of the setting at path, or of the defaults when it is not set. */
static void where_path(const config_t *cfg, const char *path, const char *file, char *buf,
                       size_t len)
{
    const config_setting_t *s = config_lookup(cfg, path);
    if (s)
        where(s, file, buf, len);
    else
        snprintf(buf, len, "%s", file);
}

/* tls.cert and tls.key: both or neither, and files that can be read. */
static int check_tls(const config_t *cfg, const struct settings *v, const char *file, char *err,
                     size_t errlen)
{
    char at[300];
    if (!v->tls_cert[0] != !v->tls_key[0]) {
        const char *set = v->tls_cert[0] ? "tls.cert" : "tls.key";
        where_path(cfg, set, file, at, sizeof at);
        errf(err, errlen, "%s: setting '%s': tls.cert and tls.key go together, and %s is not set",
             at, set, v->tls_cert[0] ? "tls.key" : "tls.cert");
        return CHATD_EINVAL;
    }
    const char *const paths[] = {"tls.cert", "tls.key"};
    const char *const files[] = {v->tls_cert, v->tls_key};
    for (int i = 0; i < 2; i++) {
        struct stat sb;
        const char *why = !files[i][0]                  ? NULL
                          : stat(files[i], &sb) != 0    ? strerror(errno)
                          : !S_ISREG(sb.st_mode)        ? "not a file"
                          : access(files[i], R_OK) != 0 ? strerror(errno)
                                                        : NULL;
        if (why) {
            where_path(cfg, paths[i], file, at, sizeof at);
            errf(err, errlen, "%s: setting '%s': cannot read %s: %s", at, paths[i], files[i], why);
            return CHATD_EINVAL;
        }
    }
    return 0;
}

/* server.listen and admin.listen: addresses that can be bound, and not the same one. */
static int check_listen(const config_t *cfg, const struct settings *v, const char *file, char *err,
                        size_t errlen)
{
    char at[300];
    struct sockaddr_storage main_addr, admin_addr;
    where_path(cfg, "server.listen", file, at, sizeof at);
    if (config_check_address(at, "server.listen", v->listen, &main_addr, err, errlen) < 0)
        return CHATD_EINVAL;
    if (!v->admin_listen[0])
        return 0;
    where_path(cfg, "admin.listen", file, at, sizeof at);
    if (config_check_address(at, "admin.listen", v->admin_listen, &admin_addr, err, errlen) < 0)
        return CHATD_EINVAL;
    if (addr_overlap(&main_addr, &admin_addr)) {
        errf(err, errlen,
             "%s: setting 'admin.listen': \"%s\" is server.listen's address (\"%s\") or "
             "overlaps it; give the admin API a port of its own, or \"\" to serve it on "
             "server.listen",
             at, v->admin_listen, v->listen);
        return CHATD_EINVAL;
    }
    return 0;
}

/* Settings that are each valid alone but not together, or that name something missing. */
static int check_together(const config_t *cfg, const struct settings *v, const char *file,
                          char *err, size_t errlen)
{
    char at[300];
    if (v->ws_idle_timeout <= v->ws_ping_interval) {
        const char *path =
            config_lookup(cfg, "ws.idle_timeout") ? "ws.idle_timeout" : "ws.ping_interval";
        where_path(cfg, path, file, at, sizeof at);
        errf(err, errlen,
             "%s: setting '%s': ws.idle_timeout (%lld) must be longer than ws.ping_interval "
             "(%lld), or idle clients are dropped before they are pinged",
             at, path, (long long)v->ws_idle_timeout, (long long)v->ws_ping_interval);
        return CHATD_EINVAL;
    }
    struct stat sb;
    if (v->web_root[0] && (stat(v->web_root, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        where_path(cfg, "http.web_root", file, at, sizeof at);
        errf(err, errlen, "%s: setting 'http.web_root': %s is not a directory", at, v->web_root);
        return CHATD_EINVAL;
    }
    const char *const lists[] = {"mariadb.replicas", "redis.sentinels"};
    char **const values[] = {v->mariadb_replicas, v->redis_sentinels};
    for (int i = 0; i < 2; i++) {
        where_path(cfg, lists[i], file, at, sizeof at);
        if (config_check_addresses(at, lists[i], values[i], err, errlen) < 0)
            return CHATD_EINVAL;
    }
    int rc = check_listen(cfg, v, file, err, errlen);
    return rc < 0 ? rc : check_tls(cfg, v, file, err, errlen);
}

int config_load(const char *file, const char *const *overrides, int n_overrides,
                struct settings *out, char *err, size_t errlen)
{
    config_t cfg;
    int rc = CHATD_EINVAL;
    memset(out, 0, sizeof *out);
    config_init(&cfg);
    if (file) {
        char *text = config_slurp(file);
        if (!text) {
            errf(err, errlen, "%s: cannot read the file", file);
            goto out;
        }
        char *dir = strdup(file), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash) {
            *slash = '\0';
            config_set_include_dir(&cfg, dir);
        }
        free(dir);
        int ok = config_read_text(&cfg, text);
        free(text);
        if (!ok) {
            errf(err, errlen, "%s:%d: %s", config_error_file(&cfg) ? config_error_file(&cfg) : file,
                 config_error_line(&cfg), config_error_text(&cfg));
            goto out;
        }
    }
    for (int i = 0; i < n_overrides; i++)
        if (config_apply_override(&cfg, overrides[i], err, errlen) < 0)
            goto out;
    if (check_unknown(config_root_setting(&cfg), "", file ? file : "(defaults)", err, errlen) < 0)
        goto out;
    for (size_t i = 0; i < N_SCHEMA; i++)
        if ((rc = read_value(&cfg, &config_schema[i], out, file ? file : "(defaults)", err,
                             errlen)) < 0)
            goto out;
    if ((rc = check_together(&cfg, out, file ? file : "(defaults)", err, errlen)) < 0)
        goto out;
    rc = read_plugins(&cfg, out, file ? file : "(defaults)", err, errlen);
out:
    config_destroy(&cfg);
    if (rc < 0)
        config_free(out);
    return rc;
}

void config_free(struct settings *s)
{
    for (size_t i = 0; i < N_SCHEMA; i++) {
        void *field = (char *)s + config_schema[i].offset;
        if (config_schema[i].kind == K_STR) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (config_schema[i].kind == K_STRLIST && *(char ***)field) {
            for (char **p = *(char ***)field; *p; p++)
                free(*p);
            free(*(char ***)field);
            *(char ***)field = NULL;
        }
    }
    json_decref(s->plugins);
    s->plugins = NULL;
    json_decref(s->plugin_where);
    s->plugin_where = NULL;
}

void config_print_schema(void)
{
    for (size_t i = 0; i < N_SCHEMA; i++) {
        const struct schema *sc = &config_schema[i];
        if (sc->kind == K_INT)
            printf("  %-28s %-10lld %s\n", sc->path, (long long)sc->def_int, sc->doc);
        else if (sc->kind == K_STR) {
            char quoted[64];
            snprintf(quoted, sizeof quoted, "\"%s\"", sc->def_str);
            printf("  %-28s %-10s %s\n", sc->path, quoted, sc->doc);
        } else
            printf("  %-28s %-10s %s\n", sc->path, "[]", sc->doc);
    }
}
