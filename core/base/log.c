#include "log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

static FILE *log_fp;
static char *log_path;
static chatd_log_level log_level = CHATD_LOG_INFO;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
/* Lines are written whole with one fwrite under the stdio lock, so workers and
 * the loop never interleave inside a line. */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

int log_open(const char *path, chatd_log_level level)
{
    log_level = level;
    free(log_path);
    log_path = NULL;
    if (log_fp && log_fp != stderr)
        fclose(log_fp);
    log_fp = stderr;
    if (path && *path) {
        FILE *f = fopen(path, "a");
        if (!f)
            return CHATD_EINVAL;
        setvbuf(f, NULL, _IOLBF, 0);
        log_fp = f;
        log_path = strdup(path);
    }
    return 0;
}

void log_reopen(void)
{
    if (!log_path)
        return;
    /* Workers may be writing to log_fp: it stays, and the new file takes its
     * descriptor's place under it (an atomic swap for every writer). */
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return; /* keep the old file rather than lose lines */
    fflush(log_fp);
    dup2(fd, fileno(log_fp));
    close(fd);
}

void log_set_level(chatd_log_level level)
{
    log_level = level;
}

int log_switch(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    char *copy = fd >= 0 ? strdup(path) : NULL;
    if (!copy) {
        if (fd >= 0)
            close(fd);
        return CHATD_EINVAL;
    }
    /* as log_reopen: the new file takes the descriptor's place under log_fp */
    fflush(log_fp);
    dup2(fd, fileno(log_fp));
    close(fd);
    free(log_path);
    log_path = copy;
    return 0;
}

void log_close(void)
{
    if (log_fp && log_fp != stderr)
        fclose(log_fp);
    log_fp = NULL;
    free(log_path);
    log_path = NULL;
}

int log_enabled(chatd_log_level level)
{
    return level <= log_level;
}

void log_set_format(enum log_format format)
{
    log_fmt = format;
}

int log_format_parse(const char *name)
{
    if (strcmp(name, "text") == 0)
        return LOG_FORMAT_TEXT;
    if (strcmp(name, "json") == 0)
        return LOG_FORMAT_JSON;
    return -1;
}

/* s[0..len) as the inside of a JSON string at out, which holds 6 * len:
 * quotes, backslashes and control characters escaped, and each byte that
 * starts no valid UTF-8 sequence written as U+FFFD. The length written. */
static size_t json_escape(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char b = u[i];
        if (b == '"' || b == '\\') {
            out[o++] = '\\';
            out[o++] = (char)b;
        } else if (b == '\n' || b == '\r' || b == '\t') {
            out[o++] = '\\';
            out[o++] = b == '\n' ? 'n' : b == '\r' ? 'r' : 't';
        } else if (b < 0x20 || b == 0x7f) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[b >> 4];
            out[o + 5] = hex[b & 15];
            o += 6;
        } else if (b < 0x80) {
            out[o++] = (char)b;
        } else {
            size_t n = utf8_seq(u + i, len - i);
            if (n) {
                memcpy(out + o, s + i, n);
                o += n;
                i += n;
                continue;
            }
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
        }
        i++;
    }
    return o;
}

#define TEXT_MAX 2048 /* bytes of a line's message at most */
#define WHO_MAX 64
#define REQUEST_MAX 128

/* {"time","level","module","message"[,"conn"][,"request"]} and a newline. */
static size_t json_line(char *out, const char *stamp, chatd_log_level level, const char *who,
                        uint64_t conn, const char *request, const char *text, size_t len)
{
    size_t o = (size_t)sprintf(out, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":\"", stamp,
                               level_names[level]);
    o += json_escape(out + o, who, strnlen(who, WHO_MAX));
    o += (size_t)sprintf(out + o, "\",\"message\":\"");
    o += json_escape(out + o, text, len);
    out[o++] = '"';
    if (conn)
        o += (size_t)sprintf(out + o, ",\"conn\":%llu", (unsigned long long)conn);
    if (request) {
        o += (size_t)sprintf(out + o, ",\"request\":\"");
        o += json_escape(out + o, request, strnlen(request, REQUEST_MAX));
        out[o++] = '"';
    }
    out[o++] = '}';
    out[o++] = '\n';
    return o;
}

/* "<time> <level> <who>: [conn N [request R]: ]<text>" and a newline. */
static size_t text_line(char *out, size_t cap, const char *stamp, chatd_log_level level,
                        const char *who, uint64_t conn, const char *request, const char *text,
                        size_t len)
{
    int n = snprintf(out, cap, "%s %s %s: ", stamp, level_names[level], who);
    size_t o = n < 0 ? 0 : (size_t)n > cap / 2 ? cap / 2 : (size_t)n, head = o;
    if (conn || request) {
        char cid[32] = "";
        if (conn)
            snprintf(cid, sizeof cid, "conn %llu", (unsigned long long)conn);
        int k = snprintf(out + o, cap - o, "%s%s%s%.*s: ", cid, conn && request ? " " : "",
                         request ? "request " : "", REQUEST_MAX, request ? request : "");
        o += k < 0 ? 0 : (size_t)k >= cap - o ? cap - o - 1 : (size_t)k;
    }
    if (len > cap - o - 1)
        len = cap - o - 1;
    memcpy(out + o, text, len);
    o += len;
    /* One event, one line: no embedded newlines from callers' text. */
    for (size_t i = head; i < o; i++)
        if (out[i] == '\n' || out[i] == '\r')
            out[i] = ' ';
    out[o++] = '\n';
    return o;
}

void log_ids_vmsg(chatd_log_level level, const char *who, uint64_t conn, const char *request,
                  const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    char text[TEXT_MAX], stamp[64];
    int m = vsnprintf(text, sizeof text, fmt, ap);
    size_t len = m < 0 ? 0 : (size_t)m >= sizeof text ? sizeof text - 1 : (size_t)m;
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    /* JSON: every byte of text, who and request may take 6 (\u00XX) */
    char line[256 + 6 * (TEXT_MAX + WHO_MAX + REQUEST_MAX)];
    size_t n = log_fmt == LOG_FORMAT_JSON
                   ? json_line(line, stamp, level, who, conn, request, text, len)
                   : text_line(line, TEXT_MAX + 256, stamp, level, who, conn, request, text, len);
    FILE *f = log_fp ? log_fp : stderr;
    fwrite(line, 1, n, f);
    fflush(f);
}

void log_vmsg(chatd_log_level level, const char *who, const char *fmt, va_list ap)
{
    log_ids_vmsg(level, who, 0, NULL, fmt, ap);
}

void log_msg(chatd_log_level level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, who, fmt, ap);
    va_end(ap);
}

void log_ids_msg(chatd_log_level level, const char *who, uint64_t conn, const char *request,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_ids_vmsg(level, who, conn, request, fmt, ap);
    va_end(ap);
}
