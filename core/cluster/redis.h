/*
 * Redis, for nodes that share state: one connection for commands and one
 * for subscriptions, both on the loop through hiredis's libevent adapter,
 * each reconnected with backoff when lost (subscriptions are renewed).
 * With redis.sentinels, both go where the Sentinels name the master, only
 * once ROLE says it is one, and move with a failover: +switch-master, a lost
 * connection or a READONLY answer sends them there (sentinel.h).
 * Disabled when redis.host is "" and no Sentinel is set. Loop thread only.
 */
#ifndef CHATD_REDIS_H
#define CHATD_REDIS_H

#include <stddef.h>
#include <event2/event.h>

struct settings;
struct redisReply;

/* Connect (asynchronously) when configured. 0 or CHATD_ENOMEM. */
int redis_init(struct event_base *base, const struct settings *s);
void redis_free(void);
/* Whether Redis is configured at all (a node of several). */
int redis_enabled(void);
/* Whether the command connection is up now. */
int redis_ready(void);
/* Whether the subscription connection is up now, and how many times it has
 * connected: a new count means messages published meanwhile were missed. */
int redis_sub_ready(void);
unsigned redis_sub_epoch(void);

/*
 * A command's answer goes to the caller's own state, passed through as it
 * is (hiredis's privdata): the caller's struct starts with a struct
 * redis_call whose fn is called with the reply (borrowed for the call; NULL
 * when the command failed or the connection was lost first) and the call
 * itself, to be cast back. One allocation per command: the caller's.
 */
struct redis_call;
typedef void (*redis_reply_fn)(struct redisReply *r, struct redis_call *call);
struct redis_call {
    redis_reply_fn fn;
};

/* Send a command (hiredis format: %s, %b with pointer and length, %lld).
 * call may be NULL (no answer wanted). CHATD_EUNAVAIL, with call->fn not
 * called, when not connected. */
int redis_cmd(struct redis_call *call, const char *fmt, ...);

/* The same with an argument vector (argv[i] of argvlen[i] bytes, copied). */
int redis_cmdv(struct redis_call *call, int argc, const char **argv, const size_t *argvlen);

/* Messages on topics starting with prefix (after redis.prefix) go to
 * handler(topic, payload, len), both borrowed. Start-up only. 0, or
 * CHATD_ENOMEM past the handlers the table holds. */
int redis_on_message(const char *prefix,
                     void (*handler)(const char *topic, const char *data, size_t len));
/* Make ev (a heartbeat's timer, borrowed until redis_free) active each time
 * the command link is (again) up on a master, so that what this node keeps
 * in Redis is written there at once: a master new after a failover may lack
 * the last writes. Start-up only. 0, or CHATD_ENOMEM past the events the
 * table holds. */
int redis_on_up(struct event *ev);

/* Count one more (or one fewer) interest in a topic; subscribed while > 0. */
void redis_subscribe(const char *topic);
void redis_unsubscribe(const char *topic);

/* The key/topic prefix (redis.prefix), e.g. "chatd:". */
const char *redis_prefix(void);

#endif
