/* The one encoder of outbound messages. */
#include "encode.h"

#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "ws.h"

/* Outbound types seen, by a hash of their text: a frame's type costs a
 * hash and a compare of a few bytes, not a lookup in the metrics. */
#define SENT_SLOTS 64
#define TYPE_MAX 64
struct sent_slot {
    size_t len;
    char type[TYPE_MAX];
    int64_t *cell;
};
static struct sent_slot sent_cache[SENT_SLOTS];

int64_t *encode_sent_cell(const char *type, size_t len)
{
    if (len == 0 || len >= TYPE_MAX)
        return encode_sent_cell("other", 5);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)type[i]) * 16777619u;
    struct sent_slot *e = &sent_cache[h % SENT_SLOTS];
    if (e->cell && e->len == len && memcmp(e->type, type, len) == 0)
        return e->cell;
    memcpy(e->type, type, len);
    e->type[len] = '\0';
    e->len = len;
    e->cell = metrics_counter_label_ref("ws_messages_out", "type", e->type);
    return e->cell;
}

int64_t *encode_sent_cell_of(const char *json, size_t len)
{
    static const char lead[] = "{\"type\":\"";
    const size_t n = sizeof lead - 1;
    if (len > n && memcmp(json, lead, n) == 0)
        for (size_t i = n; i < len && i < n + TYPE_MAX; i++) {
            if (json[i] == '\\')
                break;
            if (json[i] == '"')
                return encode_sent_cell(json + n, i - n);
        }
    return encode_sent_cell("other", 5);
}

json_t *encode_object(const char *type, json_t *body, json_t *request_id)
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

/* The text is written straight from body's members, without the merged
 * object encode_object() makes: a delivery is encoded once, but every write
 * encodes two (its ack and the notification). */
struct wsmsg *encode_frame(const char *type, json_t *body, json_t *request_id)
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
    if (m)
        m->sent = encode_sent_cell(type, strlen(type));
    return m;
}
