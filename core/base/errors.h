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
/* Error answers counted by code in chatd_<family>_total{code="..."}: init
 * makes the family's series of every code (at 0) and keeps their cells in
 * cells (ERROR_CELLS of them), so that counting one costs no lookup. */
#define ERROR_CELLS (CHATD_ERR_INTERNAL + 1)
void error_count_init(int64_t **cells, const char *family);
void error_count(int64_t **cells, const char *family, chatd_error_code code);
const char *error_internal_text(const char *detail, const char *what, uint64_t conn,
                                const char *request, char *out, size_t len);

#endif
