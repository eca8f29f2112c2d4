/*
 * The wire's error codes (PROTOCOL.md section 4): their names, the HTTP
 * status of each, and the reference an INTERNAL error carries. Pure, any thread.
 */
#ifndef CHATD_ERRORS_H
#define CHATD_ERRORS_H

#include <stddef.h>

#include "chatd/plugin.h"

/* Wire name of an error code ("BAD_REQUEST"); "INTERNAL" for an unknown one. */
const char *error_code_name(chatd_error_code code);
/* HTTP status that goes with an error code (400, 401, ...). */
int error_http_status(chatd_error_code code);
/*
 * An INTERNAL error: log detail (borrowed, may be NULL) with a new random
 * reference, as the error of `what` (borrowed, may be NULL) on connection
 * conn (0: none) for request (a requestId or X-Request-Id, NULL: none), and
 * write the client's text, which quotes the reference, into out (len
 * bytes). Returns out.
 */
const char *error_internal_text(const char *detail, const char *what, uint64_t conn,
                                const char *request, char *out, size_t len);

#endif
