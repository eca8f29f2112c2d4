/* Leveled one-line logging to stderr or a file. Loop thread and workers alike. */
#ifndef CHATD_LOG_H
#define CHATD_LOG_H

#include <stdarg.h>
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

/* Write one line "<time> <level> <who>: <text>". who is borrowed. */
void log_msg(chatd_log_level level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(chatd_log_level level, const char *who, const char *fmt, va_list ap);

#define log_error(...) log_msg(CHATD_LOG_ERROR, "core", __VA_ARGS__)
#define log_warn(...) log_msg(CHATD_LOG_WARN, "core", __VA_ARGS__)
#define log_info(...) log_msg(CHATD_LOG_INFO, "core", __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(CHATD_LOG_DEBUG))                                                          \
            log_msg(CHATD_LOG_DEBUG, "core", __VA_ARGS__);                                         \
    } while (0)

#endif
