#include "presence.h"

#include <stdlib.h>

#include "chatd/plugin.h"
#include "client.h"
#include "hmap.h"
#include "ws.h"

/* Heads of intrusive lists: the conns themselves carry the links, so
 * indexing a WebSocket allocates nothing but, for a new key, its head. */
struct head {
    struct client *first;
};

static hmap *by_user;    /* user id -> head (c->u_prev/u_next) */
static hmap *by_channel; /* channel id -> head (c->c_prev/c_next) */
static long n_clients, n_entered;
static struct presence_observer observer;

int presence_init(const struct presence_observer *ob)
{
    observer = *ob;
    by_user = hmap_new(0);
    by_channel = hmap_new(0);
    return by_user && by_channel ? 0 : CHATD_ENOMEM;
}

static void free_heads(hmap *m)
{
    size_t pos = 0;
    void *v;
    if (!m)
        return;
    while (hmap_iter(m, &pos, NULL, NULL, &v))
        free(v);
    hmap_free(m);
}

void presence_free(void)
{
    free_heads(by_user);
    free_heads(by_channel);
    by_user = by_channel = NULL;
    n_clients = n_entered = 0;
}

/* A key's first and last client are told (other nodes deliver to this one
 * while it holds a client of the user or entered in the channel). */
static void interest(hmap *m, int64_t key, int on)
{
    void (*tell)(int64_t, int) = m == by_user ? observer.user_interest : observer.channel_interest;
    if (tell)
        tell(key, on);
}

static void entered(int64_t channel_id, int64_t user_id, int on)
{
    if (observer.entered)
        observer.entered(channel_id, user_id, on);
}

static struct head *head_get(hmap *m, int64_t key, int create)
{
    struct head *h = hmap_get_id(m, (uint64_t)key);
    if (h || !create)
        return h;
    if (!(h = calloc(1, sizeof *h)))
        return NULL;
    if (hmap_put_id(m, (uint64_t)key, h) < 0) {
        free(h);
        return NULL;
    }
    interest(m, key, 1);
    return h;
}

/* The list helpers take the link fields by offset so one pair of functions
 * serves both lists. */
#define LINKS(c, prev) ((struct client **)((char *)(c) + (prev)))

static void list_insert(struct head *h, struct client *c, size_t prev_off)
{
    struct client **l = LINKS(c, prev_off); /* l[0] = prev, l[1] = next */
    l[0] = NULL;
    l[1] = h->first;
    if (h->first)
        LINKS(h->first, prev_off)[0] = c;
    h->first = c;
}

static void list_remove(hmap *m, int64_t key, struct client *c, size_t prev_off)
{
    struct head *h = hmap_get_id(m, (uint64_t)key);
    struct client **l = LINKS(c, prev_off);
    if (!h)
        return;
    if (l[0])
        LINKS(l[0], prev_off)[1] = l[1];
    else if (h->first == c)
        h->first = l[1];
    if (l[1])
        LINKS(l[1], prev_off)[0] = l[0];
    l[0] = l[1] = NULL;
    if (!h->first) {
        free(hmap_del_id(m, (uint64_t)key));
        interest(m, key, 0);
    }
}

#define U_OFF offsetof(struct client, u_prev)
#define C_OFF offsetof(struct client, c_prev)
_Static_assert(offsetof(struct client, u_next) == U_OFF + sizeof(struct client *),
               "u links adjacent");
_Static_assert(offsetof(struct client, c_next) == C_OFF + sizeof(struct client *),
               "c links adjacent");

int presence_add(struct client *c)
{
    struct head *h = head_get(by_user, c->user_id, 1);
    if (!h)
        return CHATD_ENOMEM;
    list_insert(h, c, U_OFF);
    c->indexed = 1;
    n_clients++;
    return 0;
}

void presence_remove(struct client *c)
{
    if (!c->indexed)
        return;
    presence_enter(c, 0);
    list_remove(by_user, c->user_id, c, U_OFF);
    c->indexed = 0;
    n_clients--;
}

long presence_users(void)
{
    return by_user ? (long)hmap_count(by_user) : 0;
}

struct client *presence_user_clients(int64_t user_id)
{
    struct head *h = head_get(by_user, user_id, 0);
    return h ? h->first : NULL;
}

/* Whether any client of the user, closing or not, is entered in the
 * channel: what the observer's first and last entered are counted by, so
 * each "on" is followed by exactly one "off". */
static int user_entered(int64_t user_id, int64_t channel_id)
{
    for (struct client *c = presence_user_clients(user_id); c; c = c->u_next)
        if (c->channel_id == channel_id)
            return 1;
    return 0;
}

int presence_enter(struct client *c, int64_t channel_id)
{
    if (c->channel_id == channel_id)
        return 0;
    int64_t old = c->channel_id;
    if (old) {
        list_remove(by_channel, old, c, C_OFF);
        c->channel_id = 0;
        n_entered--;
        if (!user_entered(c->user_id, old))
            entered(old, c->user_id, 0);
    }
    if (!channel_id)
        return 0;
    int first = !user_entered(c->user_id, channel_id);
    struct head *h = head_get(by_channel, channel_id, 1);
    if (!h)
        return CHATD_ENOMEM;
    list_insert(h, c, C_OFF);
    c->channel_id = channel_id;
    n_entered++;
    if (first)
        entered(channel_id, c->user_id, 1);
    return 0;
}

void presence_each_entered(void (*fn)(int64_t channel_id, int64_t user_id, void *arg), void *arg)
{
    size_t pos = 0;
    uint64_t cid;
    void *v;
    while (hmap_iter(by_channel, &pos, &cid, NULL, &v))
        for (struct client *c = ((struct head *)v)->first; c; c = c->c_next)
            fn((int64_t)cid, c->user_id, arg);
}

void presence_each_user(void (*fn)(int64_t user_id, void *arg), void *arg)
{
    size_t pos = 0;
    uint64_t uid;
    while (hmap_iter(by_user, &pos, &uid, NULL, NULL))
        fn((int64_t)uid, arg);
}

struct client *presence_channel_clients(int64_t channel_id)
{
    struct head *h = head_get(by_channel, channel_id, 0);
    return h ? h->first : NULL;
}

/* A closing WebSocket counts as gone for push decisions, from its close on. */
int presence_user_in_channel(int64_t user_id, int64_t channel_id)
{
    for (struct client *c = presence_user_clients(user_id); c; c = c->u_next)
        if (c->channel_id == channel_id && ws_is_open(c->conn))
            return 1;
    return 0;
}

int presence_user_online(int64_t user_id)
{
    for (struct client *c = presence_user_clients(user_id); c; c = c->u_next)
        if (ws_is_open(c->conn))
            return 1;
    return 0;
}

void presence_user_leave_channel(int64_t user_id, int64_t channel_id)
{
    for (struct client *c = presence_user_clients(user_id); c; c = c->u_next)
        if (c->channel_id == channel_id)
            presence_enter(c, 0);
}

long presence_count(void)
{
    return n_clients;
}

long presence_channel_count(void)
{
    return by_channel ? (long)hmap_count(by_channel) : 0;
}

long presence_entered_count(void)
{
    return n_entered;
}
