/* Socket addresses to and from text: the "host:port" of the listen settings
 * (server.listen, admin.listen) and the peers' addresses. Pure. */
#ifndef CHATD_ADDR_H
#define CHATD_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Parse "host:port" (a numeric IPv4 address, "[v6]", or "" for 0.0.0.0;
 * port 0..65535) into *ss and *len. 0, or CHATD_EINVAL. */
int addr_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len);
/* Whether two parsed listen addresses cannot both be bound: the same port
 * (not 0, which picks a free one) on the same address, or with either one
 * a wildcard (0.0.0.0, [::]) that covers the other. */
int addr_overlap(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* The address of sa as text (no port) into out (len bytes; "?" for another
 * family), and its port into *port when port is not NULL. */
void addr_text(const struct sockaddr *sa, char *out, size_t len, int *port);

#endif
