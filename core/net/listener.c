#include "listener.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
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

int listener_start(struct event_base *base, const char *spec, listener_accept_fn accepted)
{
    struct sockaddr_storage ss;
    socklen_t len;
    ls.base = base;
    ls.accepted = accepted;
    if (addr_parse(spec, &ss, &len) < 0) {
        log_error("server.listen: '%s' is not HOST:PORT with a numeric address", spec);
        return CHATD_EINVAL;
    }
    if (!(ls.resume = event_new(base, -1, 0, on_resume, NULL)))
        return CHATD_ENOMEM;
    /* No SO_REUSEPORT: a second chatd on a busy address must not share it. */
    ls.listener =
        evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                4096, (struct sockaddr *)&ss, (int)len);
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
