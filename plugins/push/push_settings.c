/* The settings of the push plugin's config entry, which the core checks
 * (ABI 1.1). chatd-push reads the same entry and is built with this file:
 * the settings only it reads are declared here too, so that chatd accepts
 * them and both check every value alike. */
#include "push_settings.h"

#include <stdint.h>

static const char *const backend_names[] = {"log", "redis", "webhook", NULL};

const chatd_setting push_settings_decl[] = {
    CHATD_STRING_SETTING("backend", "log", backend_names,
                         "where notifications go: log, webhook or redis"),
    CHATD_STRING_SETTING("file", "push.log", NULL,
                         "the log backend's file, relative to server.data_dir"),
    CHATD_STRING_SETTING("stream", "chatd:push", NULL, "the redis backend's stream"),
    CHATD_INT_SETTING("max_length", 1000000, 1, INT64_MAX,
                      "the stream (and chatd-push's dead stream) is trimmed near this"),
    CHATD_STRING_SETTING("url", NULL, NULL, "the webhook backend's receiver, http:// or https://"),
    CHATD_STRING_SETTING("secret", "", NULL, "signs each POST (X-Chatd-Signature); \"\": unsigned"),
    CHATD_INT_SETTING("timeout_ms", 5000, 1, 600000, "a POST with no answer by then has failed"),
    CHATD_STRING_SETTING("ca_file", "", NULL,
                         "CA certificates for an https receiver (\"\": the system's)"),
    CHATD_INT_SETTING("max_in_flight", 64, 1, 100000,
                      "notifications handed to the backend at once"),
    CHATD_INT_SETTING("max_attempts", 10, 1, 1000,
                      "attempts before a notification is dead-lettered"),
    CHATD_INT_SETTING("backoff_ms", 1000, 1, 3600000,
                      "the wait after a first failure; doubles with each attempt"),
    CHATD_INT_SETTING("backoff_max_ms", 300000, 1, 86400000, "the longest wait between attempts"),
    CHATD_INT_SETTING("max_pending", 100000, 1, 100000000,
                      "notifications a node holds; past it the oldest are dead-lettered"),
    CHATD_INT_SETTING("lease_ms", 30000, 300, 3600000,
                      "a node's hold on what it delivers, renewed every third of it"),
    CHATD_INT_SETTING("recover_after_ms", 10000, 100, 3600000,
                      "an unsettled push decision is made again by any node after this"),
    CHATD_INT_SETTING("max_devices_per_user", 10, 1, 1000, "device tokens a user may register"),
    /* chatd-push's (push/): the plugin does not read them */
    CHATD_STRING_SETTING("group", "chatd-push", NULL,
                         "chatd-push: the consumer group every worker of the stream joins"),
    CHATD_STRING_SETTING("consumer", NULL, NULL,
                         "chatd-push: this worker's name in the group (default host-pid)"),
    CHATD_STRING_SETTING("dead_stream", NULL, NULL,
                         "chatd-push: where entries go after max_attempts (default stream:dead)"),
    CHATD_INT_SETTING("claim_after_ms", 30000, 100, 86400000,
                      "chatd-push: entries idle this long in another worker are taken over"),
    CHATD_INT_SETTING("block_ms", 2000, 1, 600000,
                      "chatd-push: the longest one XREADGROUP waits for new entries"),
    CHATD_INT_SETTING("command_timeout_ms", 5000, 100, 600000,
                      "chatd-push: Redis silent this long: the connection is made again"),
    CHATD_INT_SETTING("shutdown_timeout_ms", 10000, 0, 3600000,
                      "chatd-push: how long SIGTERM waits for the POSTs under way"),
    CHATD_INT_SETTING("stats_interval_ms", 60000, 0, 86400000,
                      "chatd-push: a line of counts in the log this often (0: at exit)"),
    {"delete_delivered", CHATD_SETTING_BOOL, 1, 0, 1, NULL, NULL,
     "chatd-push: XDEL an entry once delivered (false: MAXLEN trims it)"},
    CHATD_SETTINGS_END,
};
