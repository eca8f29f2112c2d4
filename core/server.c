/*
 * Listener and connection lifecycle. Connections are freed only at a safe
 * point (a deferred event after the current callback), never inside a
 * bufferevent or wslay callback that may still touch them.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "conn.h"
#include "hmap.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "ws.h"

static struct {
    struct event_base *base;
    const struct settings *s;
    struct evconnlistener *listener;
    hmap *by_id;
    struct conn *all;       /* doubly linked list of live connections */
    long count;
    uint64_t next_id;
    struct conn *graveyard; /* dead connections to free at a safe point */
    struct event *reaper;
    struct event *flusher; /* writes the output of the connections in flushq */
    struct conn *flushq;
    struct event *sweep;
    struct event *accept_resume;
    hmap *per_addr;         /* client address -> open connections (as an integer) */
    int draining;
} srv;

int64_t conn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct conn *conn_find(uint64_t id)
{
    struct conn *c = srv.by_id ? hmap_get_id(srv.by_id, id) : NULL;
    return c && c->state != CONN_DEAD ? c : NULL;
}

struct evbuffer *conn_input(struct conn *c)
{
    return bufferevent_get_input(c->bev);
}

int conn_write(struct conn *c, const void *data, size_t len)
{
    if (c->state == CONN_DEAD)
        return -1;
    return bufferevent_write(c->bev, data, len);
}

static void flushq_remove(struct conn *c)
{
    if (!c->flush_queued)
        return;
    if (c->f_prev)
        c->f_prev->f_next = c->f_next;
    else
        srv.flushq = c->f_next;
    if (c->f_next)
        c->f_next->f_prev = c->f_prev;
    c->f_prev = c->f_next = NULL;
    c->flush_queued = 0;
}

void conn_manual_output(struct conn *c)
{
    if (bufferevent_getfd(c->bev) < 0)
        return; /* not a socket (a bufferevent pair, in tests): it moves the bytes itself */
    c->manual_output = 1;
    bufferevent_disable(c->bev, EV_WRITE);
    conn_flush_soon(c);
}

void conn_flush_soon(struct conn *c)
{
    if (c->flush_queued || c->state == CONN_DEAD)
        return;
    /* Activated now, the flusher runs after every callback already due in
     * this turn: deliveries of a whole batch go out in one write. */
    if (!srv.flushq)
        event_active(srv.flusher, EV_TIMEOUT, 0);
    c->f_next = srv.flushq;
    if (srv.flushq)
        srv.flushq->f_prev = c;
    srv.flushq = c;
    c->flush_queued = 1;
}

/* Write what the kernel takes now; leave the rest to the bufferevent, which
 * writes it on writability and calls on_write once all is out. */
static void flush_one(struct conn *c)
{
    struct bufferevent *bev = c->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    if (c->state == CONN_DEAD || !c->manual_output || (bufferevent_get_enabled(bev) & EV_WRITE) ||
        evbuffer_get_length(out) == 0)
        return;
    evbuffer_unfreeze(out, 1); /* a bufferevent's output is drained by it alone */
    int n = evbuffer_write(out, bufferevent_getfd(bev));
    int err = errno;
    evbuffer_freeze(out, 1);
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
        conn_abort(c); /* reset by the peer: nothing more can be sent */
        return;
    }
    if (evbuffer_get_length(out) != 0) {
        bufferevent_enable(bev, EV_WRITE);
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    while (srv.flushq) {
        struct conn *c = srv.flushq;
        flushq_remove(c);
        flush_one(c);
    }
}

/* Connections per client address, for server.max_connections_per_addr. */
static int addr_take(const char *peer)
{
    intptr_t n = (intptr_t)hmap_get_str(srv.per_addr, peer);
    if (n >= srv.s->max_connections_per_addr)
        return CHATD_ELIMIT;
    return hmap_put_str(srv.per_addr, peer, (void *)(n + 1));
}

static void addr_release(const char *peer)
{
    intptr_t n = (intptr_t)hmap_get_str(srv.per_addr, peer);
    if (n <= 1)
        hmap_del_str(srv.per_addr, peer);
    else
        hmap_put_str(srv.per_addr, peer, (void *)(n - 1));
}

static void conn_unlink(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        srv.all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    while (srv.graveyard) {
        struct conn *c = srv.graveyard;
        srv.graveyard = c->next;
        ws_conn_free(c);
        http_conn_free(c);
        if (c->bev)
            bufferevent_free(c->bev);
        free(c);
    }
}

void conn_abort(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->ws)
        session_detach(c); /* tells plugins CONN_CLOSED */
    http_conn_orphan(c);
    flushq_remove(c);
    c->state = CONN_DEAD;
    hmap_del_id(srv.by_id, c->id);
    addr_release(c->peer);
    conn_unlink(c);
    srv.count--;
    metrics_gauge("connections", srv.count);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    c->next = srv.graveyard;
    srv.graveyard = c;
    event_active(srv.reaper, EV_TIMEOUT, 0);
}

void conn_close_after_write(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->state != CONN_CLOSING) {
        /* A closing WebSocket takes no more deliveries and counts as gone
         * for push decisions. */
        if (c->ws)
            session_detach(c);
        c->state = CONN_CLOSING;
    }
    if (!c->close_armed) {
        /* Bound how long a client that does not read can hold the socket. */
        struct timeval tv = {5, 0};
        bufferevent_set_timeouts(c->bev, &tv, &tv);
        /* the bufferevent writes the rest and calls on_write when done */
        flushq_remove(c);
        bufferevent_enable(c->bev, EV_WRITE);
        c->close_armed = 1;
    }
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0 ||
        (c->ws && ws_wants_close_frame(c)) || c->lingering)
        return;
    if (!c->ws) {
        /* Lingering close: a client (or balancer) still sending a body we
         * refused would get a reset that can swallow our answer. Shut our
         * side, read and drop what it sends, and close at its EOF or after
         * two seconds. */
        c->lingering = 1;
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        struct timeval tv = {2, 0};
        bufferevent_set_timeouts(c->bev, &tv, NULL);
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    conn_abort(c);
}

void conn_pause_read(struct conn *c, int pause)
{
    if (c->state == CONN_DEAD)
        return;
    if (pause)
        bufferevent_disable(c->bev, EV_READ);
    else
        bufferevent_enable(c->bev, EV_READ);
}

void conn_process_input(struct conn *c)
{
    if (c->state == CONN_HTTP)
        http_conn_read(c);
    else if (c->state == CONN_WS || (c->state == CONN_CLOSING && c->ws))
        ws_conn_read(c);
    else
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    c->last_rx_ms = conn_now_ms();
    conn_process_input(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_CLOSING) {
        conn_close_after_write(c);
    } else if (c->state == CONN_WS) {
        /* the backlog is out: writes are the server's again (conn_flush_soon) */
        if (c->manual_output && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            bufferevent_disable(bev, EV_WRITE);
    } else if (c->output_blocked) {
        /* The client read our answers: take its next requests. */
        c->output_blocked = 0;
        conn_pause_read(c, 0);
        conn_process_input(c);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_EOF && c->state == CONN_HTTP && c->pending) {
        /* The client half-closed after its request: answer, then close. */
        c->state = CONN_CLOSING;
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_abort(c);
}

int server_adopt(struct bufferevent *bev, const char *peer)
{
    if (srv.draining || srv.count >= srv.s->max_connections || addr_take(peer) < 0) {
        metrics_count("connections_refused", 1);
        bufferevent_free(bev);
        return CHATD_ELIMIT;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c || (c->id = ++srv.next_id, hmap_put_id(srv.by_id, c->id, c) < 0)) {
        free(c);
        addr_release(peer);
        bufferevent_free(bev);
        return CHATD_ENOMEM;
    }
    c->bev = bev;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->last_rx_ms = conn_now_ms();
    c->deadline_ms = c->last_rx_ms + srv.s->ws_handshake_timeout * 1000;
    c->next = srv.all;
    if (srv.all)
        srv.all->prev = c;
    srv.all = c;
    srv.count++;
    metrics_count("connections_accepted", 1);
    metrics_gauge("connections", srv.count);
    struct timeval tv = {srv.s->ws_handshake_timeout, 0};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CONN_HTTP;
    return 0;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)l, (void)socklen, (void)arg;
    char peer[48] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, peer, sizeof peer);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, peer, sizeof peer);
    struct bufferevent *bev = bufferevent_socket_new(srv.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    server_adopt(bev, peer);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (srv.listener && !srv.draining)
        evconnlistener_enable(srv.listener);
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
    event_add(srv.accept_resume, &one_second);
}

/* Every sweep period: ping quiet WebSockets, close dead ones. The period is a quarter of the shorter of ws.ping_interval and
 * ws.idle_timeout (100 ms to 1 s), so a client that answers pings is never
 * taken for idle because a tick came late. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    int64_t now = conn_now_ms();
    int64_t ping_ms = srv.s->ws_ping_interval * 1000, idle_ms = srv.s->ws_idle_timeout * 1000;
    struct conn *next;
    for (struct conn *c = srv.all; c; c = next) {
        next = c->next;
        if (c->state == CONN_HTTP && c->deadline_ms && now > c->deadline_ms && !c->pending) {
            /* A request trickled in slower than ws.handshake_timeout allows. */
            metrics_count("http_request_timeouts", 1);
            conn_abort(c);
            continue;
        }
        if (c->state != CONN_WS)
            continue;
        int64_t quiet = now - c->last_rx_ms;
        if (quiet >= idle_ms) {
            metrics_count("ws_idle_closed", 1);
            conn_abort(c);
        } else if (quiet >= ping_ms) {
            ws_ping_if_due(c, now, ping_ms);
        }
    }
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

int server_start(struct event_base *base, const struct settings *s)
{
    struct sockaddr_storage ss;
    int len;
    srv.base = base;
    srv.s = s;
    if (parse_listen(s->listen, &ss, &len) < 0) {
        log_error("server.listen: '%s' is not HOST:PORT with a numeric address", s->listen);
        return CHATD_EINVAL;
    }
    if (!(srv.by_id = hmap_new(0)) || !(srv.per_addr = hmap_new(1)) ||
        !(srv.reaper = event_new(base, -1, 0, reap, NULL)) ||
        !(srv.flusher = event_new(base, -1, 0, on_flush, NULL)) ||
        !(srv.sweep = event_new(base, -1, EV_PERSIST, on_sweep, NULL)) ||
        !(srv.accept_resume = event_new(base, -1, 0, on_accept_resume, NULL)))
        return CHATD_ENOMEM;
    srv.listener =
        evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                4096, (struct sockaddr *)&ss, len);
    if (!srv.listener) {
        log_error("cannot listen on %s: %s", s->listen, strerror(errno));
        return CHATD_EINVAL;
    }
    evconnlistener_set_error_cb(srv.listener, on_accept_error);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    char addr[64] = "?";
    getsockname(evconnlistener_get_fd(srv.listener), (struct sockaddr *)&bound, &blen);
    int port = 0;
    if (bound.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&bound)->sin_addr, addr, sizeof addr);
        port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        log_info("listening on %s:%d", addr, port);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&bound)->sin6_addr, addr, sizeof addr);
        port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        log_info("listening on [%s]:%d", addr, port);
    }
    int64_t shorter = s->ws_ping_interval < s->ws_idle_timeout ? s->ws_ping_interval
                                                                : s->ws_idle_timeout;
    int64_t period_ms = shorter * 1000 / 4;
    period_ms = period_ms < 100 ? 100 : period_ms > 1000 ? 1000 : period_ms;
    struct timeval period = {period_ms / 1000, (period_ms % 1000) * 1000};
    event_add(srv.sweep, &period);
    return 0;
}

void server_drain(void)
{
    srv.draining = 1;
    if (srv.listener) {
        evconnlistener_free(srv.listener);
        srv.listener = NULL;
    }
    struct conn *next;
    for (struct conn *c = srv.all; c; c = next) {
        next = c->next;
        if (c->state == CONN_WS)
            ws_close(c, 1001, "server shutting down");
        else if (c->state == CONN_HTTP && !c->pending)
            conn_abort(c);
    }
}

int server_draining(void)
{
    return srv.draining;
}

long server_connection_count(void)
{
    return srv.count;
}

void server_free(void)
{
    struct conn *next;
    for (struct conn *c = srv.all; c; c = next) {
        next = c->next;
        conn_abort(c);
    }
    reap(-1, 0, NULL);
    if (srv.listener)
        evconnlistener_free(srv.listener);
    if (srv.sweep)
        event_free(srv.sweep);
    if (srv.reaper)
        event_free(srv.reaper);
    if (srv.flusher)
        event_free(srv.flusher);
    if (srv.accept_resume)
        event_free(srv.accept_resume);
    hmap_free(srv.by_id);
    hmap_free(srv.per_addr);
    memset(&srv, 0, sizeof srv);
}
