#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "chatd/plugin.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

static struct {
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *resume;
    listener_accept_fn accepted;
} ls;

static void addr_text(const struct sockaddr *sa, char *out, size_t len, int *port)
{
    snprintf(out, len, "?");
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
        if (port)
            *port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
        if (port)
            *port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)l, (void)socklen, (void)arg;
    char peer[48];
    addr_text(sa, peer, sizeof peer, NULL);
    /* With TLS the handshake is the first thing on every connection: the
     * protocols above see only what comes after it. */
    struct bufferevent *bev = tls_enabled()
                                  ? tls_accept(ls.base, fd)
                                  : bufferevent_socket_new(ls.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    int one = 1; /* on the socket, under TLS too: records go out as they are made */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ls.accepted(bev, peer);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (ls.listener)
        evconnlistener_enable(ls.listener);
}

/* Out of file descriptors (or similar): stop accepting for a moment rather
 * than spin on a listener that stays readable. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    metrics_count("accept_errors", 1);
    log_warn("accept: %s; pausing accepts for a second", evutil_socket_error_to_string(err));
    evconnlistener_disable(l);
    struct timeval one_second = {1, 0};
    event_add(ls.resume, &one_second);
}

static int parse_listen(const char *spec, struct sockaddr_storage *ss, int *len)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host)
        return CHATD_EINVAL;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    char *h = host;
    if (h[0] == '[') { /* [::1]:8080 */
        h++;
        h[strlen(h) - 1] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return CHATD_EINVAL;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, *h ? h : "0.0.0.0", &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
    } else if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
    } else {
        return CHATD_EINVAL;
    }
    return 0;
}

int listener_start(struct event_base *base, const char *spec, listener_accept_fn accepted)
{
    struct sockaddr_storage ss;
    int len;
    ls.base = base;
    ls.accepted = accepted;
    if (parse_listen(spec, &ss, &len) < 0) {
        log_error("server.listen: '%s' is not HOST:PORT with a numeric address", spec);
        return CHATD_EINVAL;
    }
    if (!(ls.resume = event_new(base, -1, 0, on_resume, NULL)))
        return CHATD_ENOMEM;
    /* No SO_REUSEPORT: a second chatd on a busy address must not share it. */
    ls.listener =
        evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                4096, (struct sockaddr *)&ss, len);
    if (!ls.listener) {
        log_error("cannot listen on %s: %s", spec, strerror(errno));
        return CHATD_EINVAL;
    }
    evconnlistener_set_error_cb(ls.listener, on_accept_error);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    char addr[64];
    int port = 0;
    getsockname(evconnlistener_get_fd(ls.listener), (struct sockaddr *)&bound, &blen);
    addr_text((struct sockaddr *)&bound, addr, sizeof addr, &port);
    const char *what = tls_enabled() ? " (TLS: https and wss only)" : "";
    if (bound.ss_family == AF_INET6)
        log_info("listening on [%s]:%d%s", addr, port, what);
    else
        log_info("listening on %s:%d%s", addr, port, what);
    return 0;
}

void listener_stop(void)
{
    if (ls.listener)
        evconnlistener_free(ls.listener);
    ls.listener = NULL;
    if (ls.resume)
        event_free(ls.resume);
    ls.resume = NULL;
}
