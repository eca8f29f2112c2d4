#include "dispatch.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "bus.h"
#include "conn.h"
#include "errors.h"
#include "hmap.h"
#include "http.h"
#include "json_scan.h"
#include "log.h"
#include "metrics.h"
#include "plugins.h"
#include "presence.h"
#include "redis.h"
#include "router.h"
#include "session.h"
#include "ws.h"

#define REQUEST_ID_MAX 64
#define CLOSE_SESSION_ENDED 4001

struct handler {
    struct chatd_plugin *owner;
    chatd_msg_handler fn;
};

struct handler_list {
    struct handler *v;
    size_t n;
};

struct chatd_req {
    uint64_t conn_id;
    int64_t user_id;
    char *username;
    char *type;
    json_t *request_id; /* NULL when the client sent none */
    int64_t received_us; /* monotonic: when its frame was dispatched */
    int in_handler;
    int completed;
};

static hmap *by_type; /* type -> handler_list */

static int keep_alive(chatd_req *req, const json_t *msg, void *state)
{
    (void)msg, (void)state;
    struct conn *c = conn_find(req->conn_id);
    if (c && c->session)
        session_touch(c->session);
    return CHATD_OK;
}

int dispatch_init(void)
{
    if (!(by_type = hmap_new(1)))
        return CHATD_ENOMEM;
    return dispatch_register(NULL, "KEEP_ALIVE", keep_alive);
}

void dispatch_free(void)
{
    size_t pos = 0;
    void *v;
    if (!by_type)
        return;
    while (hmap_iter(by_type, &pos, NULL, NULL, &v)) {
        struct handler_list *l = v;
        free(l->v);
        free(l);
    }
    hmap_free(by_type);
    by_type = NULL;
}

int dispatch_register(struct chatd_plugin *owner, const char *type, chatd_msg_handler fn)
{
    if (!type || !*type || !fn)
        return CHATD_EINVAL;
    struct handler_list *l = hmap_get_str(by_type, type);
    if (!l) {
        if (!(l = calloc(1, sizeof *l)))
            return CHATD_ENOMEM;
        if (hmap_put_str(by_type, type, l) < 0) {
            free(l);
            return CHATD_ENOMEM;
        }
    }
    struct handler *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv)
        return CHATD_ENOMEM;
    l->v = nv;
    l->v[l->n++] = (struct handler){owner, fn};
    return 0;
}

void dispatch_remove_owner(struct chatd_plugin *owner)
{
    size_t pos = 0;
    void *v;
    while (hmap_iter(by_type, &pos, NULL, NULL, &v)) {
        struct handler_list *l = v;
        size_t j = 0;
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i].owner != owner)
                l->v[j++] = l->v[i];
        l->n = j;
    }
}

/* {"type": type, ...body, "requestId"?} as a new object; takes body. */
static json_t *build(const char *type, json_t *body, json_t *request_id)
{
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "type", json_string(type));
        if (json_is_object(body))
            json_object_update(o, body);
        json_object_set_new(o, "type", json_string(type)); /* the body cannot override it */
        if (request_id)
            json_object_set(o, "requestId", request_id);
    }
    json_decref(body);
    return o;
}

/* Text being built for a frame. */
struct text {
    char *p;
    size_t len, cap;
    int failed;
};

static int text_add(const char *s, size_t n, void *arg)
{
    struct text *t = arg;
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = 1;
            return -1;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    return 0;
}

/* s as a JSON string, escaped as jansson escapes it (valid UTF-8 as is). */
static void text_str(struct text *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    text_add("\"", 1, t);
    const char *run = s;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        text_add(run, (size_t)(s - run), t);
        run = s + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
        switch (ch) {
        case '"':
        case '\\':
            esc[1] = (char)ch;
            text_add(esc, 2, t);
            break;
        case '\b':
            esc[1] = 'b';
            text_add(esc, 2, t);
            break;
        case '\f':
            esc[1] = 'f';
            text_add(esc, 2, t);
            break;
        case '\n':
            esc[1] = 'n';
            text_add(esc, 2, t);
            break;
        case '\r':
            esc[1] = 'r';
            text_add(esc, 2, t);
            break;
        case '\t':
            esc[1] = 't';
            text_add(esc, 2, t);
            break;
        default:
            text_add(esc, 6, t);
        }
    }
    text_add(run, (size_t)(s - run), t);
    text_add("\"", 1, t);
}

/*
 * The same as one shared frame; takes body. The text is written straight from
 * body's members, without the merged object build() makes: a delivery is
 * encoded once, but every write encodes two (its ack and the notification).
 */
static struct wsmsg *encode(const char *type, json_t *body, json_t *request_id)
{
    struct text t = {0};
    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    text_add("{\"type\":", 8, &t);
    text_str(&t, type);
    if (json_is_object(body)) {
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
        {
            if (strcmp(key, "type") == 0 || (request_id && strcmp(key, "requestId") == 0))
                continue; /* the body cannot override them */
            text_add(",", 1, &t);
            text_str(&t, key);
            text_add(":", 1, &t);
            if (json_dump_callback(v, text_add, &t, flags) < 0)
                t.failed = 1;
        }
    }
    if (request_id) {
        text_add(",\"requestId\":", 13, &t);
        if (json_dump_callback(request_id, text_add, &t, flags) < 0)
            t.failed = 1;
    }
    text_add("}", 1, &t);
    json_decref(body);
    struct wsmsg *m = t.failed ? NULL : wsmsg_new(t.p, t.len);
    free(t.p);
    return m;
}

static int send_to(struct conn *c, struct wsmsg *m)
{
    return c && m ? ws_send(c, m) : CHATD_ENOTFOUND;
}

static void req_free(chatd_req *req)
{
    json_decref(req->request_id);
    free(req->username);
    free(req->type);
    free(req);
}

/* Mark req answered; free it unless its handler is still running. */
static void complete(chatd_req *req)
{
    metrics_observe_us("ws_request", (uint64_t)(metrics_now_us() - req->received_us));
    req->completed = 1;
    if (!req->in_handler)
        req_free(req);
}

int dispatch_reply(chatd_req *req, const char *type, json_t *body)
{
    struct wsmsg *m = encode(type, body, req->request_id);
    int rc = send_to(conn_find(req->conn_id), m);
    wsmsg_unref(m);
    complete(req);
    return rc;
}

static void send_error(uint64_t conn_id, const char *msg_type, json_t *request_id,
                       chatd_error_code code, const char *message)
{
    char text[64];
    if (code == CHATD_ERR_INTERNAL)
        message = error_internal_text(message, msg_type, text, sizeof text);
    json_t *body = json_pack("{s:s, s:s}", "code", error_code_name(code), "message",
                             message ? message : error_code_name(code));
    if (body && msg_type)
        json_object_set_new(body, "messageType", json_string(msg_type));
    struct wsmsg *m = encode("ERROR", body, request_id);
    send_to(conn_find(conn_id), m);
    wsmsg_unref(m);
    metrics_count("ws_errors", 1);
}

int dispatch_error(chatd_req *req, chatd_error_code code, const char *message)
{
    send_error(req->conn_id, req->type, req->request_id, code, message);
    complete(req);
    return 0;
}

void dispatch_req_done(chatd_req *req)
{
    complete(req);
}

int64_t dispatch_req_user_id(const chatd_req *req)
{
    return req->user_id;
}

const char *dispatch_req_username(const chatd_req *req)
{
    return req->username;
}

uint64_t dispatch_req_conn_id(const chatd_req *req)
{
    return req->conn_id;
}

const char *dispatch_req_type(const chatd_req *req)
{
    return req->type;
}

/* Token bucket per WebSocket: ws.rate_limit per second, ws.rate_burst at once. */
static int rate_allow(struct conn *c)
{
    const struct settings *s = router_settings();
    int64_t now = conn_now_ms();
    if (!c->tokens_ms) {
        c->tokens = (double)s->ws_burst;
    } else {
        c->tokens += (double)(now - c->tokens_ms) * (double)s->ws_rate / 1000.0;
        if (c->tokens > (double)s->ws_burst)
            c->tokens = (double)s->ws_burst;
    }
    c->tokens_ms = now;
    if (c->tokens < 1.0)
        return 0;
    c->tokens -= 1.0;
    return 1;
}

/* Answer a text jansson refused: name the field at fault, and carry the
 * request's type and requestId when they can be read (json_scan.h). */
static void reject_unparsed(struct conn *c, const char *data, size_t len,
                            const json_error_t *jerr, int allowed)
{
    struct json_fault f;
    json_scan_fault(data, len, &f);
    json_t *rid = f.has_request_id ? json_string(f.request_id) : NULL;
    const char *type = f.has_type ? f.type : NULL;
    char text[256];
    if (!allowed) {
        metrics_count("ws_rate_limited", 1);
        send_error(c->id, type, rid, CHATD_ERR_RATE_LIMITED,
                   "too many messages; slow down (ws.rate_limit)");
    } else {
        if (f.is_json && f.why && f.where[0])
            snprintf(text, sizeof text, "field '%s': %s", f.where, f.why);
        else if (f.is_json && f.why)
            snprintf(text, sizeof text, "%s", f.why);
        else if (f.is_json) /* valid JSON jansson refused: a key given twice */
            snprintf(text, sizeof text, "%s", jerr->text);
        else
            snprintf(text, sizeof text, "malformed JSON: %s (at byte %zu)", f.why, f.offset);
        send_error(c->id, type, rid, CHATD_ERR_BAD_REQUEST, text);
    }
    json_decref(rid);
}

/* The request's requestId when it is valid, else NULL (borrowed from msg). */
static json_t *request_id_of(const json_t *msg)
{
    json_t *rid = json_object_get(msg, "requestId");
    return json_is_string(rid) && json_string_length(rid) <= REQUEST_ID_MAX ? rid : NULL;
}

void dispatch_text(struct conn *c, const char *data, size_t len)
{
    METRICS_ADD("ws_messages_in", 1);
    if (!c->session || session_expired(c->session)) {
        ws_close(c, CLOSE_SESSION_ENDED, "session expired");
        return;
    }
    /* Every message counts against the rate, malformed ones too. */
    int allowed = rate_allow(c);
    json_error_t jerr;
    json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!msg) {
        reject_unparsed(c, data, len, &jerr, allowed);
        return;
    }
    chatd_req *req = NULL;
    json_t *rid = json_object_get(msg, "requestId");
    const char *type_s = json_string_value(json_object_get(msg, "type"));
    if (!allowed) {
        metrics_count("ws_rate_limited", 1);
        send_error(c->id, type_s, request_id_of(msg), CHATD_ERR_RATE_LIMITED,
                   "too many messages; slow down (ws.rate_limit)");
        goto out;
    }
    if (!json_is_object(msg)) {
        send_error(c->id, NULL, NULL, CHATD_ERR_BAD_REQUEST, "a message must be a JSON object");
        goto out;
    }
    if (rid && rid != request_id_of(msg)) {
        send_error(c->id, type_s, NULL, CHATD_ERR_BAD_REQUEST,
                   "requestId must be a string of at most 64 bytes");
        goto out;
    }
    if (!type_s || !*type_s) {
        send_error(c->id, NULL, rid, CHATD_ERR_BAD_REQUEST, "missing string field 'type'");
        goto out;
    }
    struct handler_list *l = hmap_get_str(by_type, type_s);
    if (!(req = calloc(1, sizeof *req)) || !(req->type = strdup(type_s)) ||
        !(req->username = strdup(session_username(c->session)))) {
        send_error(c->id, type_s, rid, CHATD_ERR_INTERNAL, "out of memory");
        goto out;
    }
    req->conn_id = c->id;
    req->user_id = c->user_id;
    req->request_id = json_incref(rid);
    req->received_us = metrics_now_us();
    for (size_t i = 0; l && i < l->n && !req->completed; i++) {
        req->in_handler = 1;
        int rc = l->v[i].fn(req, msg, l->v[i].owner ? plugin_state(l->v[i].owner) : NULL);
        req->in_handler = 0;
        if (rc == CHATD_DECLINED && !req->completed)
            continue;
        if (rc == CHATD_PENDING && !req->completed) {
            req = NULL; /* the handler completes it later */
            goto out;
        }
        if (rc < 0 && !req->completed) {
            req->in_handler = 1; /* answered here, freed below */
            dispatch_error(req, CHATD_ERR_INTERNAL, "handler failed");
        }
        goto out;
    }
    if (!req->completed) {
        req->in_handler = 1;
        dispatch_error(req, CHATD_ERR_BAD_REQUEST, "unknown message type");
    }
out:
    if (req)
        req_free(req);
    json_decref(msg);
}

int dispatch_send_conn(uint64_t conn_id, const char *type, json_t *body)
{
    struct conn *c = conn_find(conn_id);
    if (c && !session_live_at(c->session, (int64_t)time(NULL)))
        c = NULL;
    struct wsmsg *m = encode(type, body, NULL);
    int rc = send_to(c, m);
    wsmsg_unref(m);
    return rc;
}

/* Send m to a list of WebSockets linked through the field at next_off. */
static int send_list(struct conn *c, size_t next_off, uint64_t except, struct wsmsg *m)
{
    int n = 0;
    int64_t now = (int64_t)time(NULL);
    while (c && m) {
        /* read the link first: a slow reader may be closed and unlinked by the send */
        struct conn *next = *(struct conn **)((char *)c + next_off);
        /* a session whose TTL ran out gets nothing, even before its sweep */
        if (c->id != except && session_live_at(c->session, now))
            n += ws_send(c, m) == 0;
        c = next;
    }
    return n;
}

int dispatch_send_user(int64_t user_id, const char *type, json_t *body)
{
    struct conn *c = presence_user_conns(user_id);
    if (!c && !redis_enabled()) {
        json_decref(body);
        return 0;
    }
    struct wsmsg *m = encode(type, body, NULL);
    int n = send_list(c, offsetof(struct conn, u_next), 0, m);
    if (m)
        bus_publish_user(user_id, m, NULL, NULL);
    wsmsg_unref(m);
    return n;
}

int dispatch_send_channel(int64_t channel_id, uint64_t except_conn, const char *type,
                          json_t *body)
{
    struct conn *c = presence_channel_conns(channel_id);
    if (!redis_enabled() && (!c || (c->id == except_conn && !c->c_next))) {
        json_decref(body);
        return 0;
    }
    struct wsmsg *m = encode(type, body, NULL);
    int n = send_list(c, offsetof(struct conn, c_next), except_conn, m);
    if (m)
        bus_publish_channel(channel_id, m);
    wsmsg_unref(m);
    METRICS_ADD("channel_deliveries", n);
    return n;
}

/* Hand an event (borrowed) to the push plugin. */
static void push_event(int64_t user_id, const char *username, int64_t channel_id,
                       const json_t *event)
{
    chatd_event ev = {.type = CHATD_EVENT_UNDELIVERABLE, .user_id = user_id,
                      .username = username, .channel_id = channel_id, .body = event};
    plugins_emit(&ev);
    metrics_count("push_events", 1);
}

void dispatch_push(int64_t user_id, const char *username, int64_t channel_id, const char *type,
                   json_t *body)
{
    json_t *event = build(type, body, NULL);
    if (event)
        push_event(user_id, username, channel_id, event);
    json_decref(event);
}

struct notify_op {
    int64_t user_id;
    char username[64];
    json_t *event;
};

/* How many other nodes hold a WebSocket of the user: none (or unknown) means push. */
static void notify_counted(long receivers, void *arg)
{
    struct notify_op *op = arg;
    if (receivers <= 0)
        push_event(op->user_id, op->username, 0, op->event);
    json_decref(op->event);
    free(op);
}

int dispatch_notify_user(int64_t user_id, const char *username, const char *type, json_t *body)
{
    struct conn *c = presence_user_conns(user_id);
    if (!redis_enabled()) {
        if (c)
            return dispatch_send_user(user_id, type, body);
        dispatch_push(user_id, username, 0, type, body);
        return 0;
    }
    /* Several nodes: deliver here, publish for the others, and push only when
     * no node at all holds a WebSocket of the user. */
    json_t *event = build(type, body, NULL);
    char *text = event ? json_dumps(event, JSON_COMPACT) : NULL;
    struct wsmsg *m = text ? wsmsg_new(text, strlen(text)) : NULL;
    free(text);
    struct notify_op *op = c ? NULL : calloc(1, sizeof *op);
    int n = send_list(c, offsetof(struct conn, u_next), 0, m);
    if (op) {
        op->user_id = user_id;
        snprintf(op->username, sizeof op->username, "%s", username ? username : "");
        op->event = json_incref(event);
    }
    if (m)
        bus_publish_user(user_id, m, op ? notify_counted : NULL, op);
    else if (op)
        notify_counted(-1, op);
    wsmsg_unref(m);
    json_decref(event);
    return n;
}

struct absent_op {
    int64_t channel_id;
    int64_t *ids;
    char (*names)[64];
    size_t n;
    json_t *event;
};

static void absent_op_free(struct absent_op *op)
{
    json_decref(op->event);
    free(op->ids);
    free(op->names);
    free(op);
}

/* Members entered nowhere get the push (set NULL: Redis could not say, push all). */
static void absent_known(const char *set, size_t n, void *arg)
{
    struct absent_op *op = arg;
    for (size_t i = 0; i < n; i++)
        if (!set || !set[i])
            push_event(op->ids[i], op->names[i], op->channel_id, op->event);
    absent_op_free(op);
}

void dispatch_push_absent(int64_t channel_id, const int64_t *user_ids,
                          const char *const *usernames, size_t n, const char *type,
                          json_t *body)
{
    struct absent_op *op = calloc(1, sizeof *op);
    if (!op || !(op->event = build(type, body, NULL)) ||
        !(op->ids = malloc(n * sizeof *op->ids + 1)) ||
        !(op->names = malloc(n * sizeof *op->names + 1))) {
        if (op)
            absent_op_free(op);
        else
            json_decref(body);
        return;
    }
    op->channel_id = channel_id;
    for (size_t i = 0; i < n; i++) {
        if (presence_user_in_channel(user_ids[i], channel_id))
            continue; /* entered here: it was delivered */
        op->ids[op->n] = user_ids[i];
        snprintf(op->names[op->n++], 64, "%s", usernames[i] ? usernames[i] : "");
    }
    if (op->n == 0 || !redis_enabled())
        absent_known(NULL, op->n, op);
    else
        bus_who_entered(channel_id, op->ids, op->n, absent_known, op);
}
