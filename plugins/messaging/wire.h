/* The messaging plugin's wire shapes: requests read into jobs, and the
 * message object of fetch and sync (PROTOCOL.md section 5.1). */
#ifndef CHATD_MESSAGING_WIRE_H
#define CHATD_MESSAGING_WIRE_H

#include "messaging.h"

#define FETCH_DEFAULT 50
#define FETCH_MAX 200

/* Each reads msg into j: NULL, or what is wrong (*code set when it is not
 * BAD_REQUEST). Loop thread. */
const char *wire_parse_write(struct mjob *j, const json_t *msg, chatd_error_code *code);
const char *wire_parse_edit(struct mjob *j, const json_t *msg, chatd_error_code *code);
const char *wire_parse_delete(struct mjob *j, const json_t *msg, chatd_error_code *code);
const char *wire_parse_react(struct mjob *j, const json_t *msg, chatd_error_code *code);
const char *wire_parse_read_ack(struct mjob *j, const json_t *msg, chatd_error_code *code);
const char *wire_parse_fetch(struct mjob *j, const json_t *msg, chatd_error_code *code);
const char *wire_parse_sync(struct mjob *j, const json_t *msg, chatd_error_code *code);
/* Just {"channelId"} (FETCH_READ_MARKERS, TYPING). */
const char *wire_parse_channel(struct mjob *j, const json_t *msg, chatd_error_code *code);

/* A message object without its reactions (which wire_add_reaction fills
 * in): a new reference, or NULL. A deleted message has content "". */
/* The NOTIFY_MESSAGE body of a stored write (a new reference, or NULL). */
json_t *wire_notify_message(const struct mjob *j);
json_t *wire_message(int64_t seq, const char *username, const char *content, int64_t created_ms,
                     int64_t version, int64_t edited_ms, int deleted, int64_t reply_to);
/* Add {"emoji","count","me"} to a message object's reactions. */
void wire_add_reaction(json_t *message, const char *emoji, int64_t count, int me);

#endif
