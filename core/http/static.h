/* Static files under a web root. Loop thread only. */
#ifndef CHATD_STATIC_H
#define CHATD_STATIC_H

struct chatd_http;

/* Answer a GET (or HEAD) of req->path with the file under root, or 404.
 * No path escapes root. Frees req. */
void static_serve(struct chatd_http *req, const char *root);

#endif
