/* Leveled one-line logging to stderr or a file. Loop thread and workers alike. */
#ifndef CHATD_LOG_H
#define CHATD_LOG_H

#include <stdarg.h>
#include <stdint.h>

#include "chatd/plugin.h"

/* Open the log: path NULL or "" means stderr. Returns 0 or CHATD_EINVAL. */
int log_open(const char *path, chatd_log_level level);
/* Reopen the same file (SIGHUP, after rotation). */
void log_reopen(void);
/* A reload: a new level; a new file (path not "") in place of the old one. */
void log_set_level(chatd_log_level level);
int log_switch(const char *path);
void log_close(void);
/* Parse "error", "warn", "info", "debug"; -1 if unknown. */
int log_level_parse(const char *name);
int log_enabled(chatd_log_level level);
/* Lines as text (the default) or as one JSON object each (log.format). */
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
void log_set_format(enum log_format format);
/* Parse "text" or "json"; -1 if unknown. */
int log_format_parse(const char *name);

/* Write one line "<time> <level> <who>: <text>", or in JSON
 * {"time","level","module","message"}. who is borrowed. */
void log_msg(chatd_log_level level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(chatd_log_level level, const char *who, const char *fmt, va_list ap);
/* The same about one connection (conn, 0: none) and one request (request: a
 * WebSocket requestId or an HTTP X-Request-Id, NULL: none): in text
 * "<who>: conn <conn> request <request>: <text>", in JSON "conn" and
 * "request" members. */
void log_ids_msg(chatd_log_level level, const char *who, uint64_t conn, const char *request,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void log_ids_vmsg(chatd_log_level level, const char *who, uint64_t conn, const char *request,
                  const char *fmt, va_list ap);

#define log_error(...) log_msg(CHATD_LOG_ERROR, "core", __VA_ARGS__)
#define log_warn(...) log_msg(CHATD_LOG_WARN, "core", __VA_ARGS__)
#define log_info(...) log_msg(CHATD_LOG_INFO, "core", __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(CHATD_LOG_DEBUG))                                                          \
            log_msg(CHATD_LOG_DEBUG, "core", __VA_ARGS__);                                         \
    } while (0)

#endif
