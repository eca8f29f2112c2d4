/*
 * Push intents (ABI 1.1): an event to be offered to push, written in the
 * transaction of the change that caused it, so it is stored before anyone is
 * told of the change. The push plugin settles or recovers it (PROTOCOL.md
 * section 6).
 */
#include "push_intent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "loader.h"

#define INTENT_ROWS 32 /* rows of one INSERT, at most */

/* A type that needs no escaping in JSON. */
static int plain_type(const char *type)
{
    for (const char *c = type; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '_'))
            return 0;
    return *type != '\0';
}

/* The event's stored text: the body with "type" last, or NULL with *rc
 * set. The body's text with the type added to it where it can be (no copy
 * of the body: a worker only reads it), else a copy with the member set. */
static char *event_text(const chatd_intent *in, int *rc)
{
    *rc = CHATD_EINVAL;
    if (!in->type || !json_is_object(in->body) || (in->channel_id <= 0 && in->user_id <= 0))
        return NULL;
    *rc = CHATD_ENOMEM;
    char *text = NULL;
    if (plain_type(in->type) && !json_object_get(in->body, "type")) {
        char *body = json_dumps(in->body, JSON_COMPACT);
        size_t len = body ? strlen(body) : 0, tlen = strlen(in->type);
        if (len >= 2 && (text = malloc(len + tlen + 12)))
            snprintf(text, len + tlen + 12, "%.*s%s\"type\":\"%s\"}", (int)(len - 1), body,
                     len > 2 ? "," : "", in->type);
        free(body);
    } else {
        json_t *event = json_deep_copy(in->body); /* a worker's own copy to change */
        if (event && json_object_set_new(event, "type", json_string(in->type)) == 0)
            text = json_dumps(event, JSON_COMPACT);
        json_decref(event);
    }
    if (text)
        *rc = 0;
    return text;
}

/* One INSERT of in[0..n) (n <= INTENT_ROWS); 0 or a negative CHATD_E*. */
static int insert_rows(chatd_db *db, const chatd_intent *in, size_t n)
{
    char sql[128 + INTENT_ROWS * 18] =
        "INSERT INTO push_intent (channel_id, user_id, except_user, event, created_at) VALUES ";
    for (size_t i = 0; i < n; i++)
        strcat(sql, i ? ", (?, ?, ?, ?, ?)" : "(?, ?, ?, ?, ?)");
    const struct db_driver *drv = db->drv;
    chatd_stmt *st = drv->prepare(db, sql);
    int rc = st ? 0 : CHATD_EINTERNAL;
    int64_t now = clock_wall_ms();
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *text = event_text(&in[i], &rc);
        int idx = (int)i * 5 + 1, c = in[i].channel_id > 0;
        if (!text || drv->bind_int(st, idx, c ? in[i].channel_id : 0) < 0 ||
            drv->bind_int(st, idx + 1, c ? 0 : in[i].user_id) < 0 ||
            drv->bind_int(st, idx + 2, in[i].except_user) < 0 ||
            drv->bind_text(st, idx + 3, text, strlen(text)) < 0 ||
            drv->bind_int(st, idx + 4, now) < 0)
            rc = rc < 0 ? rc : CHATD_EINTERNAL;
        free(text);
    }
    if (rc == 0)
        rc = drv->step(st);
    if (st)
        drv->reset(st);
    return rc == CHATD_DONE ? 0 : rc < 0 ? rc : CHATD_EINTERNAL;
}

int64_t push_intent_write(chatd_db *db, int64_t channel_id, int64_t user_id, int64_t except_user,
                          const char *type, const json_t *body)
{
    chatd_intent one = {channel_id, user_id, except_user, type, body};
    int64_t ref = 0;
    int rc = push_intents_write(db, &one, 1, &ref);
    return rc < 0 ? rc : ref;
}

int push_intents_write(chatd_db *db, const chatd_intent *in, size_t n, int64_t *refs)
{
    for (size_t i = 0; i < n; i++)
        refs[i] = 0;
    if (!loader_subscribed(CHATD_EVENT_PUSH_SETTLED))
        return 0; /* nobody would settle them */
    if (!db || (n && !in))
        return CHATD_EINVAL;
    const struct db_driver *drv = db->drv;
    int64_t step = drv->insert_step ? drv->insert_step(db) : 0;
    size_t most = step > 0 ? INTENT_ROWS : 1;
    for (size_t from = 0, m = most; from < n; from += m) {
        while (m > n - from)
            m >>= 1; /* 32, 16, ... rows: a few statement shapes */
        int rc = insert_rows(db, in + from, m);
        if (rc < 0)
            return rc;
        int64_t first =
            m > 1 && drv->first_insert_id ? drv->first_insert_id(db, m) : drv->last_insert_id(db);
        for (size_t i = 0; i < m; i++)
            refs[from + i] = first + (int64_t)i * (step > 0 ? step : 1);
    }
    return 0;
}
