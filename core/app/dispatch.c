/* Inbound WebSocket messages: parsed, rate-limited, routed by "type" to the
 * handlers registered, and the requests' life until their answer. */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor.h"
#include "client.h"
#include "clock.h"
#include "encode.h"
#include "errors.h"
#include "hmap.h"
#include "json_scan.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "ws.h"

#define REQUEST_ID_MAX 64

struct handler {
    void *owner;
    chatd_msg_handler fn;
    void *state;
};

struct handler_list {
    struct handler *v;
    size_t n;
    int64_t *received; /* chatd_ws_messages_in_total{type=...}, made with the list */
};

struct chatd_req {
    uint64_t conn_id;
    int64_t user_id;
    char *username;
    char *type;
    json_t *request_id;  /* NULL when the client sent none */
    int64_t received_us; /* clock_now_us() when its frame was dispatched */
    int in_handler;
    int completed;
    /* request_as: no WebSocket; the reply goes here instead */
    void (*answer)(void *arg, const json_t *reply);
    void *answer_arg;
};

static struct {
    struct dispatch_limits lim;
    hmap *by_type;                /* type -> handler_list */
    int64_t *errors[ERROR_CELLS]; /* chatd_ws_errors_total{code} */
} ds;

static int keep_alive(chatd_req *req, const json_t *msg, void *state)
{
    (void)msg, (void)state;
    struct client *c = client_find(req->conn_id);
    if (c && c->session)
        session_touch(c->session);
    return CHATD_OK;
}

void dispatch_set_limits(const struct dispatch_limits *limits)
{
    ds.lim = *limits;
}

int dispatch_init(const struct dispatch_limits *limits)
{
    ds.lim = *limits;
    error_count_init(ds.errors, "ws_errors");
    if (!(ds.by_type = hmap_new(1)))
        return CHATD_ENOMEM;
    return dispatch_register(NULL, "KEEP_ALIVE", keep_alive, NULL);
}

static int free_list(uint64_t id, const char *key, void *value, void *arg)
{
    struct handler_list *l = value;
    (void)id, (void)key, (void)arg;
    free(l->v);
    free(l);
    return 1;
}

void dispatch_free(void)
{
    if (!ds.by_type)
        return;
    hmap_sweep(ds.by_type, free_list, NULL);
    hmap_free(ds.by_type);
    ds.by_type = NULL;
}

int dispatch_register(void *owner, const char *type, chatd_msg_handler fn, void *state)
{
    if (!type || !*type || !fn)
        return CHATD_EINVAL;
    struct handler_list *l = hmap_get_str(ds.by_type, type);
    if (!l) {
        if (!(l = calloc(1, sizeof *l)))
            return CHATD_ENOMEM;
        l->received = metrics_counter_label_ref("ws_messages_in", "type", type);
        if (hmap_put_str(ds.by_type, type, l) < 0) {
            free(l);
            return CHATD_ENOMEM;
        }
    }
    struct handler *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv)
        return CHATD_ENOMEM;
    l->v = nv;
    l->v[l->n++] = (struct handler){owner, fn, state};
    return 0;
}

void dispatch_remove_owner(void *owner)
{
    size_t pos = 0;
    void *v;
    while (hmap_iter(ds.by_type, &pos, NULL, NULL, &v)) {
        struct handler_list *l = v;
        size_t j = 0;
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i].owner != owner)
                l->v[j++] = l->v[i];
        l->n = j;
    }
}

static int send_to(struct client *c, struct wsmsg *m)
{
    return c && m ? ws_send(c->conn, m) : CHATD_ENOTFOUND;
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
    metrics_observe_us("ws_request", (uint64_t)(clock_now_us() - req->received_us));
    req->completed = 1;
    if (!req->in_handler)
        req_free(req);
}

/* A request of request_as: its reply as the JSON a WebSocket would carry. */
static void answer_json(chatd_req *req, const char *type, json_t *body)
{
    json_t *o = json_is_object(body) ? body : json_object();
    if (o != body)
        json_decref(body);
    if (o) {
        json_object_set_new(o, "type", json_string(type));
        if (req->request_id)
            json_object_set(o, "requestId", req->request_id);
    }
    req->answer(req->answer_arg, o);
    json_decref(o);
}

int dispatch_reply(chatd_req *req, const char *type, json_t *body)
{
    if (req->answer) {
        answer_json(req, type, body);
        complete(req);
        return 0;
    }
    struct wsmsg *m = encode_frame(type, body, req->request_id);
    int rc = send_to(client_find(req->conn_id), m);
    wsmsg_unref(m);
    complete(req);
    return rc;
}

static void send_error(uint64_t conn_id, const char *msg_type, json_t *request_id,
                       chatd_error_code code, const char *message)
{
    char text[64];
    if (code == CHATD_ERR_INTERNAL)
        message = error_internal_text(message, msg_type, conn_id, json_string_value(request_id),
                                      text, sizeof text);
    json_t *body = json_pack("{s:s, s:s}", "code", error_code_name(code), "message",
                             message ? message : error_code_name(code));
    if (body && msg_type)
        json_object_set_new(body, "messageType", json_string(msg_type));
    struct wsmsg *m = encode_frame("ERROR", body, request_id);
    send_to(client_find(conn_id), m);
    wsmsg_unref(m);
    error_count(ds.errors, "ws_errors", code);
}

int dispatch_error(chatd_req *req, chatd_error_code code, const char *message)
{
    if (req->answer) {
        char text[64];
        if (code == CHATD_ERR_INTERNAL)
            message = error_internal_text(message, req->type, req->conn_id,
                                          json_string_value(req->request_id), text, sizeof text);
        answer_json(req, "ERROR",
                    json_pack("{s:s, s:s, s:s}", "code", error_code_name(code), "message",
                              message ? message : error_code_name(code), "messageType", req->type));
        complete(req);
        return 0;
    }
    send_error(req->conn_id, req->type, req->request_id, code, message);
    complete(req);
    return 0;
}

void dispatch_req_done(chatd_req *req)
{
    if (req->answer)
        req->answer(req->answer_arg, NULL);
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

/* Every message counts against the client's rate, malformed ones too. */
static int rate_allow(struct client *c)
{
    int64_t now = clock_now_ms();
    if (!c->tokens_ms) { /* a new bucket is full */
        c->tokens = (double)ds.lim.burst;
        c->tokens_ms = now;
    }
    return chatd_bucket_take(&c->tokens, &c->tokens_ms, (double)ds.lim.rate, (double)ds.lim.burst,
                             now);
}

/* Answer a text jansson refused: name the field at fault, and carry the
 * request's type and requestId when they can be read (json_scan.h). */
static void reject_unparsed(struct client *c, const char *data, size_t len,
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

/* Hand req to the handlers of its type in turn until one takes it;
 * answer for them when none does. Takes req. */
static void run_handlers(struct handler_list *l, chatd_req *req, const json_t *msg)
{
    for (size_t i = 0; l && i < l->n && !req->completed; i++) {
        req->in_handler = 1;
        int64_t before = actor_set(req->user_id); /* the jobs it submits are the user's */
        int rc = l->v[i].fn(req, msg, l->v[i].state);
        actor_set(before);
        req->in_handler = 0;
        if (rc == CHATD_DECLINED && !req->completed)
            continue;
        if (rc == CHATD_PENDING && !req->completed)
            return; /* the handler completes it later */
        if (rc < 0 && !req->completed) {
            req->in_handler = 1; /* answered here, freed below */
            dispatch_error(req, CHATD_ERR_INTERNAL, "handler failed");
        }
        req_free(req);
        return;
    }
    if (!req->completed) {
        req->in_handler = 1;
        dispatch_error(req, CHATD_ERR_BAD_REQUEST, "unknown message type");
    }
    req_free(req);
}

int dispatch_as(int64_t user_id, const char *username, const json_t *msg,
                void (*answer)(void *arg, const json_t *reply), void *arg)
{
    const char *type = json_string_value(json_object_get(msg, "type"));
    struct handler_list *l = type ? hmap_get_str(ds.by_type, type) : NULL;
    if (!l || !l->n)
        return CHATD_ENOTFOUND;
    chatd_req *req = calloc(1, sizeof *req);
    if (!req || !(req->type = strdup(type)) ||
        !(req->username = strdup(username ? username : ""))) {
        if (req)
            req_free(req);
        return CHATD_ENOMEM;
    }
    req->user_id = user_id;
    req->request_id = json_incref(request_id_of(msg));
    req->received_us = clock_now_us();
    req->answer = answer;
    req->answer_arg = arg;
    run_handlers(l, req, msg);
    return 0;
}

/* One more message received of l's type, or of none a handler has (l NULL). */
static void count_in(const struct handler_list *l)
{
    static int64_t *other;
    if (!other)
        other = metrics_counter_label_ref("ws_messages_in", "type", "other");
    int64_t *cell = l && l->received ? l->received : other;
    if (cell)
        ++*cell;
}

void dispatch_text(struct client *c, const char *data, size_t len)
{
    if (!c->session || session_expired(c->session)) {
        count_in(NULL);
        ws_close(c->conn, SESSION_CLOSE_ENDED, "session expired");
        return;
    }
    /* Every message counts against the rate, malformed ones too. */
    int allowed = rate_allow(c);
    json_error_t jerr;
    json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!msg) {
        count_in(NULL);
        reject_unparsed(c, data, len, &jerr, allowed);
        return;
    }
    chatd_req *req = NULL;
    json_t *rid = json_object_get(msg, "requestId");
    const char *type_s = json_string_value(json_object_get(msg, "type"));
    struct handler_list *l = type_s ? hmap_get_str(ds.by_type, type_s) : NULL;
    count_in(l);
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
    if (!(req = calloc(1, sizeof *req)) || !(req->type = strdup(type_s)) ||
        !(req->username = strdup(c->username))) {
        send_error(c->id, type_s, rid, CHATD_ERR_INTERNAL, "out of memory");
        goto out;
    }
    req->conn_id = c->id;
    req->user_id = c->user_id;
    req->request_id = json_incref(rid);
    req->received_us = clock_now_us();
    run_handlers(l, req, msg);
    req = NULL; /* run_handlers owns it */
out:
    if (req)
        req_free(req);
    json_decref(msg);
}
