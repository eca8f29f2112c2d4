/*
 * Redis Sentinel (redis.sentinels): where the master of redis.master_name
 * is, asked of the Sentinels one after another (SENTINEL
 * get-master-addr-by-name), and a subscription to +switch-master on one of
 * them, so that a failover is heard of as soon as they decide it. One per
 * process (chatd, chatd-push). Loop thread only.
 */
#ifndef CHATD_SENTINEL_H
#define CHATD_SENTINEL_H

#include <event2/event.h>
#include <stddef.h>

struct settings;
struct redisReply;

/* The master is at host:port (host borrowed for the call): the answer of an
 * ask, or a failover announced. Called again with the same address when an
 * ask finds nothing moved. */
typedef void (*sentinel_master_fn)(const char *host, int port);

/* Whether Sentinels are configured. */
int sentinel_enabled(const struct settings *s);
/* Watch for failovers and ask where the master is now (s borrowed for the
 * process's life). While no Sentinel answers, asking goes on every second.
 * 0 or CHATD_ENOMEM. */
int sentinel_init(struct event_base *base, const struct settings *s, sentinel_master_fn master);
void sentinel_free(void);
/* Ask again where the master is (a connection to it was lost, or refused a
 * write): one ask at a time, a second while one is on its way is that one. */
void sentinel_ask(void);

/* Whether r (borrowed; NULL allowed), the answer to ROLE, says the server is
 * a master: where writes go, unlike a replica or a master the Sentinels
 * demoted. */
int sentinel_role_is_master(const struct redisReply *r);

/* The new address in a +switch-master message "<name> <old ip> <old port>
 * <new ip> <new port>" when it is about the master name: 0, else
 * CHATD_EINVAL (another master, or not such a message). */
int sentinel_parse_switch(const char *msg, const char *name, char *host, size_t hostlen, int *port);

#endif
