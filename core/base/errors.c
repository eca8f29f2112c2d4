#include "errors.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

const char *error_code_name(chatd_error_code code)
{
    switch (code) {
    case CHATD_ERR_BAD_REQUEST:
        return "BAD_REQUEST";
    case CHATD_ERR_UNAUTHORIZED:
        return "UNAUTHORIZED";
    case CHATD_ERR_FORBIDDEN:
        return "FORBIDDEN";
    case CHATD_ERR_NOT_FOUND:
        return "NOT_FOUND";
    case CHATD_ERR_CONFLICT:
        return "CONFLICT";
    case CHATD_ERR_LIMIT_EXCEEDED:
        return "LIMIT_EXCEEDED";
    case CHATD_ERR_RATE_LIMITED:
        return "RATE_LIMITED";
    case CHATD_ERR_UNAVAILABLE:
        return "UNAVAILABLE";
    case CHATD_ERR_INTERNAL:
        return "INTERNAL";
    }
    return "INTERNAL";
}

void error_count_init(int64_t **cells, const char *family)
{
    cells[0] = NULL; /* no code: counted as INTERNAL */
    for (unsigned i = 1; i < ERROR_CELLS; i++)
        cells[i] = metrics_counter_label_ref(family, "code", error_code_name((chatd_error_code)i));
}

void error_count(int64_t **cells, const char *family, chatd_error_code code)
{
    unsigned i = (unsigned)code < ERROR_CELLS ? (unsigned)code : CHATD_ERR_INTERNAL;
    if (!cells[i])
        cells[i] = metrics_counter_label_ref(family, "code", error_code_name((chatd_error_code)i));
    if (cells[i])
        ++*cells[i];
}

int error_http_status(chatd_error_code code)
{
    switch (code) {
    case CHATD_ERR_BAD_REQUEST:
        return 400;
    case CHATD_ERR_UNAUTHORIZED:
        return 401;
    case CHATD_ERR_FORBIDDEN:
        return 403;
    case CHATD_ERR_NOT_FOUND:
        return 404;
    case CHATD_ERR_CONFLICT:
        return 409;
    case CHATD_ERR_LIMIT_EXCEEDED:
        return 413;
    case CHATD_ERR_RATE_LIMITED:
        return 429;
    case CHATD_ERR_UNAVAILABLE:
        return 503;
    case CHATD_ERR_INTERNAL:
        return 500;
    }
    return 500;
}

const char *error_internal_text(const char *detail, const char *what, uint64_t conn,
                                const char *request, char *out, size_t len)
{
    /* The client gets a reference it can quote; the log has the detail. */
    unsigned char r[4];
    if (RAND_bytes(r, sizeof r) != 1) /* unlikely; a fixed reference still finds the line */
        memset(r, 0, sizeof r);
    log_ids_msg(CHATD_LOG_ERROR, "core", conn, request, "ref %02x%02x%02x%02x: %s on %s", r[0],
                r[1], r[2], r[3], detail ? detail : "internal error", what ? what : "?");
    snprintf(out, len, "internal error (ref %02x%02x%02x%02x)", r[0], r[1], r[2], r[3]);
    return out;
}
