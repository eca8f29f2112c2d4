/*
 * The one encoder of everything chatd sends: {"type": type, ...body,
 * "requestId"?}, as a WebSocket frame (encoded once, whatever the number of
 * recipients) or as a JSON object (for the push plugin). The body cannot
 * override "type" or "requestId". Pure; loop thread by use.
 */
#ifndef CHATD_ENCODE_H
#define CHATD_ENCODE_H

#include <jansson.h>

struct wsmsg;

/* A shared frame with one reference, or NULL when out of memory. Takes body
 * (may be NULL); request_id borrowed (may be NULL). */
struct wsmsg *encode_frame(const char *type, json_t *body, json_t *request_id);
/* The same as a new JSON object, or NULL. Takes body; request_id borrowed. */
json_t *encode_object(const char *type, json_t *body, json_t *request_id);

#endif
