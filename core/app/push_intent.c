/*
 * Push intents (ABI 1.1): an event to be offered to push, written in the
 * transaction of the change that caused it, so it is stored before anyone is
 * told of the change. The push plugin settles or recovers it (PROTOCOL.md
 * section 6).
 */
#include "push_intent.h"

#include <stdlib.h>

#include "clock.h"
#include "db.h"
#include "loader.h"

int64_t push_intent_write(chatd_db *db, int64_t channel_id, int64_t user_id, int64_t except_user,
                          const char *type, const json_t *body)
{
    if (!loader_subscribed(CHATD_EVENT_PUSH_SETTLED))
        return 0; /* nobody would settle it */
    if (!db || !type || !json_is_object(body) || (channel_id <= 0 && user_id <= 0))
        return CHATD_EINVAL;
    json_t *event = json_deep_copy(body); /* a worker's own copy: body is the caller's */
    if (!event || json_object_set_new(event, "type", json_string(type)) < 0) {
        json_decref(event);
        return CHATD_ENOMEM;
    }
    char *text = json_dumps(event, JSON_COMPACT);
    json_decref(event);
    if (!text)
        return CHATD_ENOMEM;
    int rc = db_run(db,
                    "INSERT INTO push_intent (channel_id, user_id, except_user, event, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    "iiisi", channel_id > 0 ? channel_id : 0, channel_id > 0 ? 0 : user_id,
                    except_user, text, clock_wall_ms());
    free(text);
    return rc < 0 ? rc : db->drv->last_insert_id(db);
}
