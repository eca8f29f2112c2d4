/* The help text of each metric chatd and its plugins report, for the # HELP
 * lines of /metrics. A name that is not here (a third-party plugin's) gets a
 * generic text naming its plugin. */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

struct help {
    const char *name; /* without chatd_ and the _total or _seconds suffix */
    const char *text;
};

/* Sorted by name, for bsearch. */
static const struct help helps[] = {
    {"accept_errors", "Failed accepts on the listener (accepting pauses a second after one)."},
    {"bus_deliveries_in", "Frames received from other nodes over the Redis bus."},
    {"bus_lag",
     "Time from a node's PUBLISH of a probe on the Redis bus to its arrival back at the node, "
     "sampled once a second."},
    {"bus_publishes", "Frames published to other nodes over the Redis bus."},
    {"channel_deliveries", "Messages queued to WebSockets by channel fan-out, one per recipient."},
    {"commit_batch_max", "The most write jobs committed in one transaction since the start."},
    {"commit_batch_size", "Write jobs committed in one transaction (group commit)."},
    {"connection_requests", "Friend connection requests answered (connection plugin)."},
    {"connections", "Open TCP connections (HTTP and WebSocket)."},
    {"connections_accepted", "TCP connections accepted."},
    {"connections_refused", "TCP connections closed at once: server.max_connections or "
                            "server.max_connections_per_addr reached, or draining."},
    {"entered_channels", "Channels with at least one WebSocket entered in them on this node."},
    {"entered_clients", "WebSockets entered in a channel on this node."},
    {"http_errors", "HTTP error answers, by error code."},
    {"http_rejected", "HTTP requests refused before routing (malformed or over http.max_*)."},
    {"http_request", "Time from an HTTP request's first byte to its answer."},
    {"http_request_timeouts",
     "Connections closed for not completing a request within ws.handshake_timeout."},
    {"http_requests", "HTTP requests received."},
    {"job_queue_depth", "Storage jobs queued and not yet taken by a worker."},
    {"jobs_batch_failed",
     "Write jobs whose plugin's run for a batch failed, and which ran again one by one."},
    {"jobs_batched", "Write jobs run together with others by their plugin's run for a batch."},
    {"jobs_completed", "Storage jobs whose result came back to the loop."},
    {"jobs_in_flight", "Storage jobs submitted and not yet completed."},
    {"jobs_submitted", "Storage jobs submitted to the worker pools."},
    {"login_banned", "Logins refused because the user is banned (auth plugin)."},
    {"login_failures", "Logins refused for a bad username or password (auth plugin)."},
    {"login_rate_limited", "Logins refused by the failed-login limits (auth plugin)."},
    {"logins", "Successful logins (auth plugin)."},
    {"messages_deleted", "Channel messages deleted (messaging plugin)."},
    {"messages_edited", "Channel messages edited (messaging plugin)."},
    {"messages_push_intents",
     "Channel messages stored with a push intent: a member was not known to be entered "
     "(messaging plugin)."},
    {"messages_written", "Channel messages written (messaging plugin)."},
    {"online_users", "Users with at least one WebSocket on this node."},
    {"presence_changes", "Online and offline changes told to friends (connection plugin)."},
    {"push_dead", "Push notifications given up after their last attempt (push plugin)."},
    {"push_events", "Events handed to the push plugins for users not online."},
    {"push_outbox_held", "Push notifications this node holds in its outbox (push plugin)."},
    {"push_queued", "Push notifications queued for sending (push plugin)."},
    {"push_retried", "Push notification attempts that failed and will be retried (push plugin)."},
    {"push_sent", "Push notifications delivered to the push backend (push plugin)."},
    {"push_webhook", "Time a push webhook POST took (push plugin)."},
    {"redis_commands", "Commands sent to Redis."},
    {"redis_disconnects", "Redis connections lost."},
    {"redis_failovers", "Times the Redis connections moved to a new master the Sentinels "
                        "named (redis.sentinels)."},
    {"redis_messages_in", "Pub/sub messages received from Redis."},
    {"redis_sentinel_asks", "Questions to a Sentinel for the Redis master's address."},
    {"session_end_unconfirmed",
     "Session ends that not every node confirmed within session.end_confirm_ms."},
    {"sessions", "Live login sessions this node knows."},
    {"sessions_created", "Login sessions created."},
    {"sessions_expired", "Login sessions ended by session.ttl."},
    {"store_cpu", "Time from a CPU job's submission to its result."},
    {"store_cpu_wait", "Time a CPU job waited for a worker."},
    {"store_read", "Time from a storage read's submission to its result."},
    {"store_read_primary", "Time from a read's submission to its result, for reads the "
                           "primary served (mariadb.replicas set)."},
    {"store_read_replica", "Time from a read's submission to its result, for reads a replica "
                           "served (mariadb.replicas set)."},
    {"store_read_wait", "Time a storage read waited for a worker."},
    {"store_reads_no_replica",
     "Reads sent to the primary because no replica was within mariadb.max_replica_lag_ms."},
    {"store_reads_primary", "Reads kept on the primary (CHATD_JOB_PRIMARY)."},
    {"store_reads_replica", "Reads served by a replica with no wait for a write."},
    {"store_reads_replica_lost", "Reads retried on the primary after their replica failed."},
    {"store_reads_replica_waited",
     "Reads served by a replica after waiting for the user's last write (MASTER_GTID_WAIT)."},
    {"store_reads_wait_timeout",
     "Reads sent to the primary because a replica did not reach the user's last write within "
     "mariadb.replica_wait_ms."},
    {"store_replicas_fit", "Replicas whose heartbeat is within mariadb.max_replica_lag_ms."},
    {"store_write", "Time from a storage write's submission to its result (commit included)."},
    {"store_write_wait", "Time a storage write waited for a writer."},
    {"tls_handshake_failures", "TLS handshakes that failed or were cut short."},
    {"tls_handshakes", "TLS handshakes completed."},
    {"tls_reload_failures",
     "SIGHUP reloads of the TLS certificate and key that failed (the old ones stay)."},
    {"typing_dropped", "Typing notices dropped by typing_channel_rate (messaging plugin)."},
    {"users_registered", "Users registered (auth plugin)."},
    {"users_removed", "Users unregistered (auth plugin)."},
    {"writes_rate_limited", "Message writes refused by max_writes_per_second (messaging plugin)."},
    {"ws_connections", "Open WebSockets of logged-in users."},
    {"ws_errors", "ERROR messages sent on WebSockets, by error code."},
    {"ws_idle_closed", "WebSockets closed after ws.idle_timeout of silence."},
    {"ws_invalid_utf8", "WebSocket text messages that were not UTF-8 (closed with 1007)."},
    {"ws_messages_in",
     "WebSocket messages received, by type (other: a type no handler has, or none)."},
    {"ws_messages_out", "WebSocket messages sent, one per recipient, by type."},
    {"ws_opened", "WebSocket handshakes completed."},
    {"ws_rate_limited", "WebSocket messages refused by ws.rate_limit."},
    {"ws_request", "Time from a WebSocket request's dispatch to its answer."},
    {"ws_slow_reader_closed",
     "WebSockets closed because their unread output passed ws.max_outbuf."},
};

static int cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct help *)elem)->name);
}

const char *metrics_help(const char *name)
{
    const struct help *h =
        bsearch(name, helps, sizeof helps / sizeof helps[0], sizeof helps[0], cmp);
    return h ? h->text : NULL;
}
