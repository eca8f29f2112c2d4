#include "log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static FILE *log_fp;
static char *log_path;
static chatd_log_level log_level = CHATD_LOG_INFO;
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

void log_vmsg(chatd_log_level level, const char *who, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), level_names[level], who);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    /* One event, one line: no embedded newlines from callers' text. */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    FILE *f = log_fp ? log_fp : stderr;
    fwrite(line, 1, len, f);
    fflush(f);
}

void log_msg(chatd_log_level level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, who, fmt, ap);
    va_end(ap);
}
