#include "deliver.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "client.h"
#include "clock.h"
#include "encode.h"
#include "loader.h"
#include "metrics.h"
#include "presence.h"
#include "session.h"
#include "ws.h"

/* The list's clients linked through the field at next_off, but except_conn
 * and those entered in except_channel (when not 0), that have a live session. */
static int send_list(struct client *c, size_t next_off, uint64_t except_conn,
                     int64_t except_channel, struct wsmsg *m)
{
    int n = 0;
    int64_t now = clock_wall_s();
    while (c && m) {
        /* a slow reader closed by the send stays listed until the next turn */
        struct client *next = *(struct client **)((char *)c + next_off);
        /* a session whose TTL ran out gets nothing, even before its sweep */
        if (c->id != except_conn && (!except_channel || c->channel_id != except_channel) &&
            session_live_at(c->session, now))
            n += ws_send(c->conn, m) == 0;
        c = next;
    }
    return n;
}

#define USER_LIST offsetof(struct client, u_next)
#define CHANNEL_LIST offsetof(struct client, c_next)

int deliver_conn(uint64_t conn_id, const char *type, json_t *body)
{
    struct client *c = client_find(conn_id);
    if (c && !session_live_at(c->session, clock_wall_s()))
        c = NULL;
    if (!c) {
        json_decref(body);
        return CHATD_ENOTFOUND;
    }
    struct wsmsg *m = encode_frame(type, body, NULL);
    int rc = m ? ws_send(c->conn, m) : CHATD_ENOMEM;
    wsmsg_unref(m);
    return rc;
}

/* A frame's JSON, for the other nodes. */
#define JSON_OF(m) (const char *)(m)->data + (m)->hdr, (m)->len - (m)->hdr

int deliver_user(int64_t user_id, const char *type, json_t *body)
{
    struct client *c = presence_user_clients(user_id);
    if (!c && !redis_enabled()) {
        json_decref(body);
        return 0;
    }
    struct wsmsg *m = encode_frame(type, body, NULL);
    int n = send_list(c, USER_LIST, 0, 0, m);
    if (m)
        bus_publish_user(user_id, 0, JSON_OF(m), NULL);
    wsmsg_unref(m);
    return n;
}

int deliver_channel(int64_t channel_id, uint64_t except_conn, const char *type, json_t *body)
{
    struct client *c = presence_channel_clients(channel_id);
    if (!redis_enabled() && (!c || (c->id == except_conn && !c->c_next))) {
        json_decref(body);
        return 0;
    }
    struct wsmsg *m = encode_frame(type, body, NULL);
    int n = send_list(c, CHANNEL_LIST, except_conn, 0, m);
    if (m)
        bus_publish_channel(channel_id, JSON_OF(m));
    wsmsg_unref(m);
    METRICS_ADD("channel_deliveries", n);
    return n;
}

/* Hand an event (borrowed) to the push plugin. */
static void push_event(int64_t ref, int64_t user_id, const char *username, int64_t channel_id,
                       const json_t *event)
{
    chatd_event ev = {.type = CHATD_EVENT_UNDELIVERABLE,
                      .user_id = user_id,
                      .username = username,
                      .channel_id = channel_id,
                      .body = event,
                      .push_ref = ref};
    loader_emit(&ev);
    METRICS_ADD("push_events", 1);
}

/* Every push of the intent was told. Not told when something failed on the
 * way: the intent stays stored, and the push plugin recovers it later. */
static void push_settled(int64_t ref, int64_t channel_id)
{
    if (!ref)
        return;
    chatd_event ev = {.type = CHATD_EVENT_PUSH_SETTLED, .channel_id = channel_id, .push_ref = ref};
    loader_emit(&ev);
}

void deliver_push(int64_t user_id, const char *username, int64_t channel_id, const char *type,
                  json_t *body)
{
    json_t *event = encode_object(type, body, NULL);
    if (event)
        push_event(0, user_id, username, channel_id, event);
    json_decref(event);
}

struct notify_op {
    struct bus_receivers rx; /* first: the bus answers with it */
    int64_t ref;
    int64_t user_id;
    char username[64];
    json_t *event;
};

/* How many other nodes hold a WebSocket of the user: none (or unknown) means push. */
static void notify_counted(struct bus_receivers *rx, long receivers)
{
    struct notify_op *op = (struct notify_op *)rx;
    if (receivers <= 0 && op->event)
        push_event(op->ref, op->user_id, op->username, 0, op->event);
    if (op->event)
        push_settled(op->ref, 0);
    json_decref(op->event);
    free(op);
}

int deliver_notify_user(int64_t user_id, const char *username, const char *type, json_t *body)
{
    return deliver_notify_user_ref(0, user_id, username, type, body);
}

int deliver_notify_user_ref(int64_t ref, int64_t user_id, const char *username, const char *type,
                            json_t *body)
{
    struct client *c = presence_user_clients(user_id);
    if (!redis_enabled()) {
        int n = 0;
        if (c) {
            n = deliver_user(user_id, type, body);
        } else {
            json_t *event = encode_object(type, body, NULL);
            if (event)
                push_event(ref, user_id, username, 0, event);
            json_decref(event);
            if (!event)
                return 0;
        }
        push_settled(ref, 0);
        return n;
    }
    /* Several nodes: deliver here, publish for the others, and push only when
     * no node at all holds a WebSocket of the user. */
    struct notify_op *op = c ? NULL : calloc(1, sizeof *op);
    if (op) {
        op->rx.done = notify_counted;
        op->ref = ref;
        op->user_id = user_id;
        snprintf(op->username, sizeof op->username, "%s", username ? username : "");
        op->event = encode_object(type, json_incref(body), NULL);
    }
    struct wsmsg *m = encode_frame(type, body, NULL);
    int n = send_list(c, USER_LIST, 0, 0, m);
    if (m)
        bus_publish_user(user_id, 0, JSON_OF(m), op ? &op->rx : NULL);
    else if (op)
        notify_counted(&op->rx, -1);
    if (c && m)
        push_settled(ref, 0); /* delivered here: nothing to push */
    wsmsg_unref(m);
    return n;
}

struct absent_op {
    struct bus_who who; /* first: the bus answers with it */
    int64_t ref;
    int64_t channel_id;
    int64_t *ids;
    char (*names)[64];
    size_t n;
    char type[64];
    json_t *body; /* the event is made of them only for someone absent */
};

static void absent_op_free(struct absent_op *op)
{
    json_decref(op->body);
    free(op->ids);
    free(op->names);
    free(op);
}

/* Members entered nowhere get the push (set NULL: Redis could not say, push
 * all). When the event cannot be made, the intent is not settled: the push
 * plugin recovers it later. */
static void absent_known(struct bus_who *w, const char *set)
{
    struct absent_op *op = (struct absent_op *)w;
    json_t *event = NULL;
    int failed = 0;
    for (size_t i = 0; i < op->n && !failed; i++) {
        if (set && set[i])
            continue;
        if (!event && !(event = encode_object(op->type, json_incref(op->body), NULL)))
            failed = 1;
        else
            push_event(op->ref, op->ids[i], op->names[i], op->channel_id, event);
    }
    if (!failed)
        push_settled(op->ref, op->channel_id);
    json_decref(event);
    absent_op_free(op);
}

void deliver_push_absent(int64_t channel_id, const int64_t *user_ids, const char *const *usernames,
                         size_t n, const char *type, json_t *body)
{
    deliver_push_absent_ref(0, channel_id, user_ids, usernames, n, type, body);
}

void deliver_push_absent_ref(int64_t ref, int64_t channel_id, const int64_t *user_ids,
                             const char *const *usernames, size_t n, const char *type, json_t *body)
{
    struct absent_op *op = calloc(1, sizeof *op);
    if (op)
        op->body = body;
    if (!op || !type || strlen(type) >= sizeof op->type ||
        !(op->ids = malloc(n * sizeof *op->ids + 1)) ||
        !(op->names = malloc(n * sizeof *op->names + 1))) {
        if (op)
            absent_op_free(op);
        else
            json_decref(body);
        return;
    }
    memcpy(op->type, type, strlen(type) + 1);
    op->ref = ref;
    op->channel_id = channel_id;
    for (size_t i = 0; i < n; i++) {
        if (presence_user_in_channel(user_ids[i], channel_id))
            continue; /* entered here: it was delivered */
        op->ids[op->n] = user_ids[i];
        snprintf(op->names[op->n++], 64, "%s", usernames[i] ? usernames[i] : "");
    }
    op->who = (struct bus_who){.ids = op->ids, .n = op->n, .done = absent_known};
    if (op->n == 0 || !redis_enabled())
        absent_known(&op->who, NULL);
    else
        bus_who_entered(channel_id, &op->who);
}

/* ---- what other nodes send ---- */

int deliver_channel_and_user(int64_t channel_id, int64_t user_id, uint64_t except_conn,
                             const char *type, json_t *body)
{
    struct wsmsg *m = encode_frame(type, body, NULL);
    /* the user's WebSockets entered in the channel are on both lists: once */
    int n = send_list(presence_channel_clients(channel_id), CHANNEL_LIST, except_conn, 0, m) +
            send_list(presence_user_clients(user_id), USER_LIST, except_conn, channel_id, m);
    if (m) {
        bus_publish_channel(channel_id, JSON_OF(m));
        bus_publish_user(user_id, channel_id, JSON_OF(m), NULL);
    }
    wsmsg_unref(m);
    return n;
}

/* ---- what other nodes send ---- */

/* The JSON of another node's frame, as one frame for the clients of a list. */
static void deliver_json(struct client *first, size_t next_off, int64_t except_channel,
                         const char *json, size_t len)
{
    struct wsmsg *m = wsmsg_new(json, len);
    if (m)
        m->sent = encode_sent_cell_of(json, len);
    send_list(first, next_off, 0, except_channel, m);
    wsmsg_unref(m);
}

static void bus_channel_frame(int64_t channel_id, const char *json, size_t len)
{
    deliver_json(presence_channel_clients(channel_id), CHANNEL_LIST, 0, json, len);
}

static void bus_user_frame(int64_t user_id, int64_t except_channel, const char *json, size_t len)
{
    deliver_json(presence_user_clients(user_id), USER_LIST, except_channel, json, len);
}

const struct bus_events deliver_bus_events = {
    .channel_frame = bus_channel_frame,
    .user_frame = bus_user_frame,
    .user_leave = presence_user_leave_channel,
    .each_entered = presence_each_entered,
};
