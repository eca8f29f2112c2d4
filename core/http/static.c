#include "static.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "request.h"

#define MAX_FILE (64 << 20)

/* What a browser must not do with what is served: run or load anything from
 * elsewhere, be framed, sniff a type, send the page's address on. */
#define SECURITY_HEADERS                                                                           \
    "Content-Security-Policy: default-src 'self'; connect-src 'self'; img-src 'self' data:;"       \
    " style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none';"               \
    " form-action 'self'\r\n"                                                                      \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "Referrer-Policy: no-referrer\r\n"

static const char *content_type_for(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".webmanifest", "application/manifest+json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".webp", "image/webp"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

/* Files under /assets/ carry a hash of their content in their name: they
 * never change, and may be kept for a year. Anything else (index.html)
 * is asked again each time, which its ETag makes cheap. */
static const char *cache_control_for(const char *url_path)
{
    return strncmp(url_path, "/assets/", 8) == 0 ? "public, max-age=31536000, immutable"
                                                 : "no-cache";
}

/* A path segment that starts with a dot (., .., hidden files) or a
 * backslash anywhere: never served. The path is already percent-decoded. */
static int path_allowed(const char *p)
{
    return p[0] == '/' && !strstr(p, "/.") && !strchr(p, '\\');
}

/* Whether the file the path names, all symlinks followed, lies inside
 * root (itself resolved): a link that leads out of the web root is not
 * served. */
static int inside_root(const char *root, const char *path)
{
    char real_root[PATH_MAX], real[PATH_MAX];
    if (!realpath(root, real_root) || !realpath(path, real))
        return 0;
    size_t n = strlen(real_root);
    return strncmp(real, real_root, n) == 0 && (real[n] == '/' || real_root[n - 1] == '/');
}

/* If-None-Match holds the tag (or "*"). */
static int not_modified(const struct chatd_http *req, const char *etag)
{
    const char *inm = http_header_get(req, "If-None-Match");
    return inm && (strcmp(inm, "*") == 0 || strstr(inm, etag));
}

static void not_found(struct chatd_http *req)
{
    http_respond_error(req, CHATD_ERR_NOT_FOUND, 404, "not found");
}

void static_serve(struct chatd_http *req, const char *root)
{
    const char *p = req->path;
    char path[PATH_MAX];
    int n = path_allowed(p) ? snprintf(path, sizeof path, "%s%s%s", root, p,
                                       p[strlen(p) - 1] == '/' ? "index.html" : "")
                            : -1;
    if (n < 0 || (size_t)n >= sizeof path || !inside_root(root, path)) {
        not_found(req);
        return;
    }
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > MAX_FILE) {
        if (fd >= 0)
            close(fd);
        not_found(req);
        return;
    }
    char etag[64], headers[768];
    snprintf(etag, sizeof etag, "\"%llx-%llx%09ld\"", (unsigned long long)sb.st_size,
             (unsigned long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
    snprintf(headers, sizeof headers, "Cache-Control: %s\r\nETag: %s\r\n" SECURITY_HEADERS,
             cache_control_for(p), etag);
    if (not_modified(req, etag)) {
        close(fd);
        http_respond(req, 304, NULL, NULL, 0, headers);
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
    http_respond(req, 200, content_type_for(path), buf, (size_t)got, headers);
    free(buf);
}
