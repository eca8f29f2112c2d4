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

/* One listening socket. */
struct listener {
    struct event_base *base;
    struct evconnlistener *evl;
    struct event *resume; /* accepting again after a pause */
    enum conn_listener which;
    listener_accept_fn accepted;
};

static struct listener listeners[CONN_LISTENERS];

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)evl, (void)socklen;
    struct listener *l = arg;
    char peer[48];
    addr_text(sa, peer, sizeof peer, NULL);
    /* With TLS the handshake is the first thing on every connection: the
     * protocols above see only what comes after it. */
    struct bufferevent *bev = tls_enabled()
                                  ? tls_accept(l->base, fd)
                                  : bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    int one = 1; /* on the socket, under TLS too: records go out as they are made */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    l->accepted(bev, peer, l->which);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct listener *l = arg;
    if (l->evl)
        evconnlistener_enable(l->evl);
}

/* Out of file descriptors (or similar): stop accepting for a moment rather
 * than spin on a listener that stays readable. */
static void on_accept_error(struct evconnlistener *evl, void *arg)
{
    struct listener *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    metrics_count("accept_errors", 1);
    log_warn("accept: %s; pausing accepts for a second", evutil_socket_error_to_string(err));
    evconnlistener_disable(evl);
    struct timeval one_second = {1, 0};
    event_add(l->resume, &one_second);
}

/* "listening on HOST:PORT (...)", with the port the kernel picked for port 0. */
static void log_listening(const struct listener *l)
{
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    char addr[64];
    int port = 0;
    getsockname(evconnlistener_get_fd(l->evl), (struct sockaddr *)&bound, &blen);
    addr_text((struct sockaddr *)&bound, addr, sizeof addr, &port);
    static const char *const what_of[CONN_LISTENERS][2] = {
        [CONN_LISTENER_MAIN] = {"", " (TLS: https and wss only)"},
        [CONN_LISTENER_ADMIN] = {" (admin)", " (admin, TLS: https only)"},
    };
    const char *what = what_of[l->which][tls_enabled() ? 1 : 0];
    if (bound.ss_family == AF_INET6)
        log_info("listening on [%s]:%d%s", addr, port, what);
    else
        log_info("listening on %s:%d%s", addr, port, what);
}

int listener_start(struct event_base *base, const char *spec, enum conn_listener which,
                   listener_accept_fn accepted)
{
    struct listener *l = &listeners[which];
    struct sockaddr_storage ss;
    socklen_t len;
    l->base = base;
    l->which = which;
    l->accepted = accepted;
    if (addr_parse(spec, &ss, &len) < 0) {
        log_error("cannot listen on '%s': not HOST:PORT with a numeric address", spec);
        return CHATD_EINVAL;
    }
    if (!l->resume && !(l->resume = event_new(base, -1, 0, on_resume, l)))
        return CHATD_ENOMEM;
    /* No SO_REUSEPORT: a second chatd on a busy address must not share it. */
    l->evl = evconnlistener_new_bind(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     4096, (struct sockaddr *)&ss, (int)len);
    if (!l->evl) {
        log_error("cannot listen on %s%s: %s", spec,
                  which == CONN_LISTENER_ADMIN ? " (admin.listen)" : "", strerror(errno));
        return CHATD_EINVAL;
    }
    evconnlistener_set_error_cb(l->evl, on_accept_error);
    log_listening(l);
    return 0;
}

void listener_stop(void)
{
    for (int i = 0; i < CONN_LISTENERS; i++) {
        struct listener *l = &listeners[i];
        if (l->evl)
            evconnlistener_free(l->evl);
        l->evl = NULL;
        if (l->resume)
            event_free(l->resume);
        l->resume = NULL;
    }
}
