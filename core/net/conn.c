/*
 * Connection lifecycle. A connection that dies is unlinked at once (it can
 * no longer be found) and freed by the reaper at the next loop turn, after
 * its protocol released its state.
 */
#include "conn.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "chatd/plugin.h"
#include "clock.h"
#include "hmap.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

#define CLOSE_GRACE_S 5 /* a closing client that does not read is dropped after this */
#define LINGER_S 2      /* how long a lingering close reads and drops */

static struct {
    struct event_base *base;
    struct conn_limits lim;
    hmap *by_id;
    hmap *per_addr;   /* client address -> open connections (as an integer) */
    struct conn *all; /* doubly linked list of live connections */
    long count;
    uint64_t next_id;
    struct conn *graveyard; /* dead connections to free at the next turn */
    struct conn *flushq;    /* connections with output to write this turn */
    struct event *reaper, *flusher, *sweep;
    int draining;
} net;

struct conn *conn_find(uint64_t id)
{
    struct conn *c = net.by_id ? hmap_get_id(net.by_id, id) : NULL;
    return c && c->state != CONN_DEAD ? c : NULL;
}

struct evbuffer *conn_input(struct conn *c)
{
    return bufferevent_get_input(c->bev);
}

void conn_set_ops(struct conn *c, const struct conn_ops *ops, void *proto)
{
    c->ops = ops;
    c->proto = proto;
}

/* ---- output ---- */

static void flushq_remove(struct conn *c)
{
    if (!c->flush_queued)
        return;
    if (c->f_prev)
        c->f_prev->f_next = c->f_next;
    else
        net.flushq = c->f_next;
    if (c->f_next)
        c->f_next->f_prev = c->f_prev;
    c->f_prev = c->f_next = NULL;
    c->flush_queued = 0;
}

void conn_manual_output(struct conn *c)
{
    /* Not a socket (a bufferevent pair, in tests), or TLS (what goes on the
     * socket is records only OpenSSL makes): the bufferevent writes. */
    if (c->tls || bufferevent_getfd(c->bev) < 0)
        return;
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
    if (!net.flushq)
        event_active(net.flusher, EV_TIMEOUT, 0);
    c->f_next = net.flushq;
    if (net.flushq)
        net.flushq->f_prev = c;
    net.flushq = c;
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
    if (evbuffer_get_length(out) != 0)
        bufferevent_enable(bev, EV_WRITE);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    while (net.flushq) {
        struct conn *c = net.flushq;
        flushq_remove(c);
        flush_one(c);
    }
}

/* ---- the table ---- */

/* Connections per client address, for server.max_connections_per_addr. */
static int addr_take(const char *peer)
{
    intptr_t n = (intptr_t)hmap_get_str(net.per_addr, peer);
    if (n >= net.lim.max_per_addr)
        return CHATD_ELIMIT;
    return hmap_put_str(net.per_addr, peer, (void *)(n + 1));
}

static void addr_release(const char *peer)
{
    intptr_t n = (intptr_t)hmap_get_str(net.per_addr, peer);
    if (n <= 1)
        hmap_del_str(net.per_addr, peer);
    else
        hmap_put_str(net.per_addr, peer, (void *)(n - 1));
}

static void conn_unlink(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        net.all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    while (net.graveyard) {
        struct conn *c = net.graveyard;
        net.graveyard = c->next;
        if (c->ops && c->ops->release)
            c->ops->release(c);
        if (c->bev)
            bufferevent_free(c->bev);
        free(c);
    }
}

/* A TLS connection ends: a handshake that never finished is counted and
 * logged; a stream whose every byte went out says so with close_notify. */
static void tls_end(struct conn *c)
{
    if (c->handshaking) {
        char why[128] = "";
        if (!c->tls_failure && !*tls_error_text(c->bev, why, sizeof why))
            c->tls_failure = "closed before it finished";
        metrics_count("tls_handshake_failures", 1);
        log_debug("conn %llu from %s: TLS handshake failed: %s", (unsigned long long)c->id, c->peer,
                  c->tls_failure ? c->tls_failure : why);
        c->handshaking = 0;
    } else if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        tls_close_notify(c->bev);
    }
}

void conn_abort(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->tls)
        tls_end(c);
    flushq_remove(c);
    c->state = CONN_DEAD;
    hmap_del_id(net.by_id, c->id);
    addr_release(c->peer);
    conn_unlink(c);
    net.count--;
    metrics_gauge("connections", net.count);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (c->ops && c->ops->dead)
        c->ops->dead(c);
    c->next = net.graveyard;
    net.graveyard = c;
    event_active(net.reaper, EV_TIMEOUT, 0);
}

void conn_close_after_write(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    c->state = CONN_CLOSING;
    if (!c->close_armed) {
        /* Bound how long a client that does not read can hold the socket. */
        struct timeval tv = {CLOSE_GRACE_S, 0};
        bufferevent_set_timeouts(c->bev, &tv, &tv);
        /* the bufferevent writes the rest and calls on_write when done */
        flushq_remove(c);
        bufferevent_enable(c->bev, EV_WRITE);
        c->close_armed = 1;
    }
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0 ||
        (c->ops && c->ops->awaits_peer && c->ops->awaits_peer(c)) || c->lingering)
        return;
    if (c->linger) {
        /* Lingering close: a client (or balancer) still sending a body we
         * refused would get a reset that can swallow our answer. Shut our
         * side, read and drop what it sends, and close at its EOF or after
         * LINGER_S. */
        c->lingering = 1;
        if (c->tls)
            tls_close_notify(c->bev); /* TLS's end of the stream goes before TCP's */
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        struct timeval tv = {LINGER_S, 0};
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
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->state != CONN_DEAD && !c->lingering && c->ops && c->ops->input)
        c->ops->input(c);
    else
        evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    c->last_rx_ms = clock_now_ms();
    conn_process_input(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_CLOSING) {
        conn_close_after_write(c);
        return;
    }
    /* the backlog is out: writes are the loop's again (conn_flush_soon) */
    if (c->manual_output && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    if (c->ops && c->ops->drained)
        c->ops->drained(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) { /* TLS: the handshake is done */
        if (c->handshaking)
            metrics_count("tls_handshakes", 1);
        c->handshaking = 0;
        return;
    }
    if (c->handshaking && what & (BEV_EVENT_EOF | BEV_EVENT_TIMEOUT))
        c->tls_failure = what & BEV_EVENT_TIMEOUT ? "timed out" : "the client closed";
    /* TLS tells the end of the stream from the read that brought the last
     * bytes, before their read callback: the protocol sees them first. */
    if (what & BEV_EVENT_EOF && c->tls && !c->handshaking && c->state == CONN_OPEN &&
        (bufferevent_get_enabled(bev) & EV_READ) && evbuffer_get_length(conn_input(c)) > 0)
        conn_process_input(c);
    if (what & BEV_EVENT_EOF && c->state == CONN_OPEN && c->ops && c->ops->half_closed &&
        c->ops->half_closed(c)) {
        c->state = CONN_CLOSING; /* answer, then close */
        if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
            conn_close_after_write(c); /* an answer made already: write it, then close */
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_abort(c);
}

struct conn *conn_adopt(struct bufferevent *bev, const char *peer, enum conn_listener listener,
                        const struct conn_ops *ops, void *proto)
{
    if (net.draining || net.count >= net.lim.max_connections || addr_take(peer) < 0) {
        metrics_count("connections_refused", 1);
        bufferevent_free(bev);
        return NULL;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c || (c->id = ++net.next_id, hmap_put_id(net.by_id, c->id, c) < 0)) {
        free(c);
        addr_release(peer);
        bufferevent_free(bev);
        return NULL;
    }
    c->bev = bev;
    c->tls = c->handshaking = tls_is(bev);
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->listener = listener;
    c->last_rx_ms = clock_now_ms();
    c->next = net.all;
    if (net.all)
        net.all->prev = c;
    net.all = c;
    net.count++;
    metrics_count("connections_accepted", 1);
    metrics_gauge("connections", net.count);
    conn_set_ops(c, ops, proto);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CONN_OPEN;
    return c;
}

/* Every sweep period: each connection's protocol checks its timers. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    int64_t now = clock_now_ms();
    struct conn *next;
    for (struct conn *c = net.all; c; c = next) {
        next = c->next;
        if (c->ops && c->ops->tick)
            c->ops->tick(c, now);
    }
}

void conn_set_limits(const struct conn_limits *limits)
{
    int64_t sweep_ms = net.lim.sweep_ms;
    net.lim = *limits;
    net.lim.sweep_ms = sweep_ms; /* the sweep's period stays */
}

int conn_init(struct event_base *base, const struct conn_limits *limits)
{
    net.base = base;
    net.lim = *limits;
    if (!(net.by_id = hmap_new(0)) || !(net.per_addr = hmap_new(1)) ||
        !(net.reaper = event_new(base, -1, 0, reap, NULL)) ||
        !(net.flusher = event_new(base, -1, 0, on_flush, NULL)) ||
        !(net.sweep = event_new(base, -1, EV_PERSIST, on_sweep, NULL)))
        return CHATD_ENOMEM;
    struct timeval period = {limits->sweep_ms / 1000, (limits->sweep_ms % 1000) * 1000};
    event_add(net.sweep, &period);
    return 0;
}

void conn_drain_all(void)
{
    net.draining = 1;
    struct conn *next;
    for (struct conn *c = net.all; c; c = next) {
        next = c->next;
        if (c->ops && c->ops->drain)
            c->ops->drain(c);
    }
}

int conn_draining(void)
{
    return net.draining;
}

long conn_count(void)
{
    return net.count;
}

void conn_free_all(void)
{
    while (net.all)
        conn_abort(net.all);
    reap(-1, 0, NULL);
    if (net.sweep)
        event_free(net.sweep);
    if (net.reaper)
        event_free(net.reaper);
    if (net.flusher)
        event_free(net.flusher);
    hmap_free(net.by_id);
    hmap_free(net.per_addr);
    memset(&net, 0, sizeof net);
}
