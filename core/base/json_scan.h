/*
 * A second look at a text jansson refused. JSON (RFC 8259) may hold what
 * jansson cannot: an integer beyond 64 bits, a number beyond a double, a lone
 * surrogate escape ("\ud83d", which a browser sends when it cuts a string in
 * the middle of an emoji), "\u0000" in a string. Such a text is still a
 * request: its answer must name the field at fault and carry the request's
 * "type" and "requestId", so the client can match it. Pure functions.
 */
#ifndef CHATD_JSON_SCAN_H
#define CHATD_JSON_SCAN_H

#include <stddef.h>

#define JSON_SCAN_TYPE_MAX 64
#define JSON_SCAN_RID_MAX 64

struct json_fault {
    int is_json;     /* the text is JSON; its fault is a value jansson cannot hold */
    char where[96];  /* the field at fault ("content", "a.b[2]"), "" for the text itself */
    const char *why; /* what is wrong with it (static text) */
    size_t offset;   /* byte offset of the fault (or of the syntax error) */
    /* The top-level object's "type" and "requestId", when they are strings
     * that could be read (before a syntax error, or anywhere in JSON). */
    int has_type, has_request_id;
    char type[JSON_SCAN_TYPE_MAX + 1];
    char request_id[JSON_SCAN_RID_MAX + 1];
};

/* Scan text[0..len) (valid UTF-8) and describe its first fault. */
void json_scan_fault(const char *text, size_t len, struct json_fault *out);

#endif
