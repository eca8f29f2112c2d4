/* Push intents: see host->push_intent in chatd/plugin.h. */
#ifndef CHATD_PUSH_INTENT_H
#define CHATD_PUSH_INTENT_H

#include <jansson.h>
#include <stdint.h>

#include "chatd/plugin.h"

/* Worker thread, inside a write job: the intent's id, 0 when no plugin
 * settles intents, or a negative CHATD_E*. */
int64_t push_intent_write(chatd_db *db, int64_t channel_id, int64_t user_id, int64_t except_user,
                          const char *type, const json_t *body);

/* The same for n intents (host->push_intents): multi-row INSERTs where the
 * store tells their rows' ids, else one by one. 0 or a negative CHATD_E*. */
int push_intents_write(chatd_db *db, const chatd_intent *in, size_t n, int64_t *refs);

#endif
