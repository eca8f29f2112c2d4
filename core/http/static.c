#include "static.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

static const char *content_type_for(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

/* No "..", no hidden files. */
void static_serve(struct chatd_http *req, const char *root)
{
    const char *p = req->path;
    if (strstr(p, "/.") || strchr(p, '\\')) {
        http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
        return;
    }
    char path[PATH_MAX];
    int n =
        snprintf(path, sizeof path, "%s%s%s", root, p, p[strlen(p) - 1] == '/' ? "index.html" : "");
    struct stat sb;
    int fd = n > 0 && (size_t)n < sizeof path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > (64 << 20)) {
        if (fd >= 0)
            close(fd);
        http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
        return;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    ssize_t got = buf ? read(fd, buf, (size_t)sb.st_size) : -1;
    close(fd);
    if (got != sb.st_size) {
        free(buf);
        http_respond_error(req, CHATD_ERR_INTERNAL, 500, "cannot read file");
        return;
    }
    http_respond(req, 200, content_type_for(path), buf, (size_t)got, NULL);
    free(buf);
}
