/*
 * The one encoder of everything chatd sends: {"type": type, ...body,
 * "requestId"?}, as a WebSocket frame (encoded once, whatever the number of
 * recipients) or as a JSON object (for the push plugin). The body cannot
 * override "type" or "requestId". Pure; loop thread by use.
 */
#ifndef CHATD_ENCODE_H
#define CHATD_ENCODE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct wsmsg;

/* A shared frame with one reference, or NULL when out of memory. Takes body
 * (may be NULL); request_id borrowed (may be NULL). */
struct wsmsg *encode_frame(const char *type, json_t *body, json_t *request_id);
/* The same as a new JSON object, or NULL. Takes body; request_id borrowed. */
json_t *encode_object(const char *type, json_t *body, json_t *request_id);
/* The cell of chatd_ws_messages_out_total{type=...} for type[0..len) (not
 * NUL-terminated), for a frame's sent counter: found in a small cache by
 * the type's text, the metrics looked up only on a miss. */
int64_t *encode_sent_cell(const char *type, size_t len);
/* The same for a frame's JSON as encode_frame writes it ({"type":"...",
 * first): "other" when it does not start so. */
int64_t *encode_sent_cell_of(const char *json, size_t len);

#endif
