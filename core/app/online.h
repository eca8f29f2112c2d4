/*
 * Users online on any node, told to the plugins that asked
 * (host->watch_presence) as CHATD_EVENT_USER_ONLINE and USER_OFFLINE, with a
 * grace before "offline" so a reconnect does not flap. Loop thread only.
 */
#ifndef CHATD_ONLINE_H
#define CHATD_ONLINE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct settings;

/* 0 or CHATD_ENOMEM. */
int online_init(struct event_base *base, const struct settings *s);
void online_free(void);
/* Start telling, with at least this grace (the longest asked wins). */
void online_watch(int64_t grace_ms);
/* presence's observer of a user's first (on = 1) and last client here; it
 * also tells the bus. */
void online_user_interest(int64_t user_id, int on);
/* host->presence_of(). 0 or CHATD_ENOMEM (done not called). */
int online_query(const int64_t *ids, size_t n, void (*done)(void *arg, const unsigned char *online),
                 void *arg);

#endif
