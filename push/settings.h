/*
 * chatd-push's settings: the core's redis.* and log.* (core/base/config.c
 * reads and checks the whole file, as chatd does) and those of the plugins
 * entry named "push", checked by the core's checks against the settings the
 * push plugin declares (plugins/push/push_settings.c), as chatd checks them,
 * and then by what chatd-push needs of them.
 */
#ifndef CHATD_PUSH_WORKER_SETTINGS_H
#define CHATD_PUSH_WORKER_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

struct pconf {
    /* redis.*: borrowed from the core's settings (core: all of them, for the
     * Sentinels of redis.sentinels, when set, rather than redis.host) */
    const struct settings *core;
    const char *redis_host;
    int64_t redis_port, reconnect_max_ms;
    /* plugins.push.*: strings borrowed from the settings' JSON */
    const char *stream, *group, *url, *secret, *ca_file;
    char consumer[128], dead_stream[256];
    int64_t timeout_ms, max_in_flight, max_attempts, backoff_ms, backoff_max_ms;
    int64_t claim_after_ms, block_ms, command_timeout_ms, shutdown_timeout_ms;
    int64_t stats_interval_ms, max_length;
    int delete_delivered;
};

/* Fill out from s (which must outlive it; the push entry gets its
 * defaults filled in): 0, or -1 with one line in err naming the file, line
 * and setting. file: the configuration file's name, for what has no line. */
int pconf_read(struct settings *s, const char *file, struct pconf *out, char *err, size_t errlen);

/* The plugins.push settings chatd-push reads, with their defaults. */
void pconf_print(FILE *f);

/* The URL without user:password@ or ?query, for the log. */
void pconf_url_for_log(const char *url, char *out, size_t len);

#endif
