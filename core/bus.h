/*
 * Delivery across nodes over Redis pub/sub: one topic per channel and one
 * per user, subscribed while a WebSocket here needs it; and, for push
 * decisions, which users are entered in which channel on any node (a Redis
 * hash per channel, entries refreshed by a heartbeat so a dead node's expire).
 * Everything is a no-op on a single node (no redis.host). Loop thread only.
 */
#ifndef CHATD_BUS_H
#define CHATD_BUS_H

#include <stddef.h>
#include <stdint.h>

struct wsmsg;
struct event_base;
struct settings;

int bus_init(struct event_base *base, const struct settings *s);
void bus_free(void);

/* A first WebSocket here needs the topic (on = 1), or the last one left (0). */
void bus_user_interest(int64_t user_id, int on);
void bus_channel_interest(int64_t channel_id, int on);
/* A user's first WebSocket here entered the channel (on = 1), or the last left. */
void bus_entered(int64_t channel_id, int64_t user_id, int on);

/* Tell the other nodes to clear the user's WebSockets entered in the channel. */
void bus_user_leave_channel(int64_t user_id, int64_t channel_id);
/* Hand a frame to the other nodes' WebSockets of the channel / the user. */
void bus_publish_channel(int64_t channel_id, const struct wsmsg *m);
/* receivers(n, arg) gets how many other nodes hold a WebSocket of the user
 * (-1 when Redis could not say). receivers may be NULL. */
void bus_publish_user(int64_t user_id, const struct wsmsg *m,
                      void (*receivers)(long n, void *arg), void *arg);
/* entered(set, n, arg): the users of ids[0..n) entered in the channel on some
 * node (set[i] = 1), asked of Redis; (NULL, n, arg) when it could not say. */
int bus_who_entered(int64_t channel_id, const int64_t *ids, size_t n,
                    void (*entered)(const char *set, size_t n, void *arg), void *arg);

#endif
