/*
 * Redis, for nodes that share state: one connection for commands and one
 * for subscriptions, both on the loop through hiredis's libevent adapter,
 * each reconnected with backoff when lost (subscriptions are renewed).
 * Disabled when redis.host is "". Loop thread only.
 */
#ifndef CHATD_REDIS_H
#define CHATD_REDIS_H

#include <stddef.h>
#include <event2/event.h>

struct settings;
struct redisReply;

/* Connect (asynchronously) when configured. */
int redis_init(struct event_base *base, const struct settings *s);
void redis_free(void);
/* Whether Redis is configured at all (a node of several). */
int redis_enabled(void);
/* Whether the command connection is up now. */
int redis_ready(void);

/* A reply callback: r is borrowed for the call, NULL when the command failed
 * or the connection was lost before the answer. */
typedef void (*redis_reply_fn)(struct redisReply *r, void *arg);

/* Send a command (hiredis format: %s, %b with pointer and length, %lld).
 * CHATD_EUNAVAIL, with fn not called, when not connected. fn may be NULL. */
int redis_cmd(redis_reply_fn fn, void *arg, const char *fmt, ...);

/* The same with an argument vector (argv[i] of argvlen[i] bytes, copied). */
int redis_cmdv(redis_reply_fn fn, void *arg, int argc, const char **argv, const size_t *argvlen);

/* Messages on topics starting with prefix (after redis.prefix) go to
 * handler(topic, payload, len), both borrowed. Start-up only. */
int redis_on_message(const char *prefix,
                     void (*handler)(const char *topic, const char *data, size_t len));
/* Count one more (or one fewer) interest in a topic; subscribed while > 0. */
void redis_subscribe(const char *topic);
void redis_unsubscribe(const char *topic);

/* The key/topic prefix (redis.prefix), e.g. "chatd:". */
const char *redis_prefix(void);

#endif
