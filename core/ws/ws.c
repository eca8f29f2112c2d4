/* RFC 6455 over a connection. wslay does no I/O: its callbacks move bytes
 * between the connection's buffers and the frame layer. */
#include "ws.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "chatd/plugin.h"
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"

/* Frames up to this size are copied into a recipient's output, larger ones
 * shared by reference. */
#define WS_COPY_MAX 1024

/* A WebSocket's state (conn->proto). */
struct ws_conn {
    struct conn *conn;
    void *user;
    wslay_event_context_ptr ctx; /* NULL between messages: see ws_release_ctx */
    int open;                    /* not closing */
    int frame_open;              /* a frame's header came, its end not yet */
    int msg_open;                /* a fragmented data message is in progress */
    uint64_t given;              /* bytes handed to wslay since the context was made */
    uint64_t framed;             /* bytes of the frames it finished */
    uint64_t frame_bytes;        /* size of the frame being received, header included */
    int64_t last_ping_ms;
    int in_recv;            /* inside wslay_event_recv: queue, do not send */
    int recv_failed;        /* our recv callback reported a real error */
    int frame_error;        /* wslay rejected a frame: its close must say 1002 */
    int told;               /* the close was told (or is queued to be) */
    struct ws_conn *t_next; /* the queue of closes to tell */
};

static struct {
    struct ws_limits lim;
    struct ws_events ev;
    struct event *teller;
    struct ws_conn *to_tell;
} wss;

static const struct conn_ops ws_ops;

static struct ws_conn *W(const struct conn *c)
{
    return c->proto;
}

void ws_accept_key(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    char buf[128];
    size_t n = strnlen(key, sizeof buf - sizeof guid);
    memcpy(buf, key, n);
    memcpy(buf + n, guid, sizeof guid - 1);
    SHA1((const unsigned char *)buf, n + sizeof guid - 1, digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

struct wsmsg *wsmsg_new(const char *text, size_t len)
{
    size_t hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
    struct wsmsg *m = malloc(sizeof *m + hdr + len);
    if (!m)
        return NULL;
    m->refs = 1;
    m->sent = NULL;
    m->hdr = hdr;
    m->len = hdr + len;
    unsigned char *d = m->data;
    d[0] = 0x81; /* FIN + text */
    if (hdr == 2) {
        d[1] = (unsigned char)len;
    } else if (hdr == 4) {
        d[1] = 126;
        d[2] = (unsigned char)(len >> 8);
        d[3] = (unsigned char)len;
    } else {
        d[1] = 127;
        for (int i = 0; i < 8; i++)
            d[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    memcpy(d + hdr, text, len);
    return m;
}

void wsmsg_unref(struct wsmsg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

static void wsmsg_release(const void *data, size_t len, void *arg)
{
    (void)data, (void)len;
    wsmsg_unref(arg);
}

/* ---- closes, told a turn later ---- */

static void tell_one(struct ws_conn *w)
{
    if (wss.ev.closed)
        wss.ev.closed(w->user);
}

static void on_tell(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    while (wss.to_tell) {
        struct ws_conn *w = wss.to_tell;
        wss.to_tell = w->t_next;
        w->t_next = NULL;
        tell_one(w);
    }
}

/* The WebSocket stops being open: no more deliveries, and the layer above
 * hears of it at the next turn (not inside a fan-out that closed it). */
static void stop(struct ws_conn *w)
{
    w->open = 0;
    if (w->told)
        return;
    w->told = 1;
    if (!wss.to_tell)
        event_active(wss.teller, EV_TIMEOUT, 0);
    w->t_next = wss.to_tell;
    wss.to_tell = w;
}

/* Take w out of the queue (it is about to be freed) and tell it now. */
static void tell_now(struct ws_conn *w)
{
    for (struct ws_conn **p = &wss.to_tell; *p; p = &(*p)->t_next)
        if (*p == w) {
            *p = w->t_next;
            w->t_next = NULL;
            tell_one(w);
            return;
        }
}

/* ---- framing ---- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct conn *c = user;
    (void)flags;
    int n = evbuffer_remove(conn_input(c), buf, len);
    if (n < 0)
        W(c)->recv_failed = 1;
    else
        W(c)->given += (uint64_t)n;
    if (n <= 0) {
        wslay_event_set_error(ctx, n < 0 ? WSLAY_ERR_CALLBACK_FAILURE : WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct conn *c = user;
    (void)flags;
    static const uint8_t empty_close[2] = {0x88, 0x00};
    static const uint8_t close_1002[4] = {0x88, 0x02, 0x03, 0xea};
    if (W(c)->frame_error && len == 2 && memcmp(data, empty_close, 2) == 0) {
        /* wslay closes after a malformed frame without a status code; RFC
         * 6455 7.4.1 asks for 1002, so that is what goes out. */
        W(c)->frame_error = 0;
        if (c->state != CONN_DEAD && bufferevent_write(c->bev, close_1002, 4) == 0) {
            conn_flush_soon(c);
            return (ssize_t)len;
        }
    }
    if (c->state == CONN_DEAD || bufferevent_write(c->bev, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    conn_flush_soon(c);
    return (ssize_t)len;
}

static void flush(struct conn *c)
{
    struct ws_conn *w = W(c);
    if (w->ctx && !w->in_recv && c->state != CONN_DEAD)
        wslay_event_send(w->ctx);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    struct conn *c = user;
    (void)ctx;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length == 1)
        W(c)->frame_error = 1; /* a status code is two bytes: answer 1002 */
    if (!W(c)->open || wslay_is_ctrl_frame(arg->opcode))
        return; /* pings, pongs and close are answered by wslay */
    if (arg->opcode != WSLAY_TEXT_FRAME) {
        ws_close(c, WSLAY_CODE_UNSUPPORTED_DATA, "text frames only");
        return;
    }
    if (!utf8_valid(arg->msg, arg->msg_length)) {
        metrics_count("ws_invalid_utf8", 1);
        ws_close(c, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8");
        return;
    }
    wss.ev.text(W(c)->user, (const char *)arg->msg, arg->msg_length);
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    struct conn *c = user;
    (void)ctx;
    /* Client frames are masked (4 bytes) with a minimal length encoding:
     * wslay refuses the others. */
    uint64_t len = arg->payload_length;
    W(c)->frame_bytes = 2 + 4 + (len < 126 ? 0 : len < 65536 ? 2 : 8) + len;
    W(c)->frame_open = 1;
    if (!wslay_is_ctrl_frame(arg->opcode))
        W(c)->msg_open = !arg->fin;
}

static void on_frame_end(wslay_event_context_ptr ctx, void *user)
{
    struct conn *c = user;
    (void)ctx;
    W(c)->frame_open = 0;
    W(c)->framed += W(c)->frame_bytes;
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_end_callback = on_frame_end,
    .on_msg_recv_callback = on_msg,
};

/* The wslay context of a WebSocket, created when needed. */
static int ws_ctx(struct conn *c)
{
    struct ws_conn *ws = W(c);
    if (ws->ctx)
        return 0;
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, c) != 0) {
        ws->ctx = NULL;
        return CHATD_ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, (uint64_t)wss.lim.max_message);
    return 0;
}

/*
 * A wslay context carries some 8 KiB of frame buffers. Between messages it
 * holds no state we need (no frame or fragmented message open, nothing
 * queued, no byte of a frame held inside it, no close under way), so an idle
 * WebSocket gives it back and the
 * next bytes make a new one: idle connections then cost a few hundred bytes.
 */
static void ws_release_ctx(struct conn *c)
{
    struct ws_conn *ws = W(c);
    if (!ws->ctx || !W(c)->open || ws->frame_open || ws->msg_open ||
        ws->given != ws->framed || /* part of a frame header waits inside wslay */
        wslay_event_want_write(ws->ctx) || !wslay_event_want_read(ws->ctx) ||
        wslay_event_get_close_sent(ws->ctx) || wslay_event_get_close_received(ws->ctx))
        return;
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
    ws->given = ws->framed = 0;
}

/* ---- the connection's ops ---- */

/* Close once what is queued is out (and the peer's close frame came). */
static void finish(struct conn *c)
{
    stop(W(c));
    conn_close_after_write(c);
}

/* A client whose unread output passed max_outbuf is closed (1008), so one
 * slow reader never holds memory or others up. */
static int check_outbuf(struct conn *c)
{
    if (!W(c)->open ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) <= (size_t)wss.lim.max_outbuf)
        return 0;
    metrics_count("ws_slow_reader_closed", 1);
    log_ids_msg(CHATD_LOG_INFO, "core", c->id, NULL, "closed, outgoing buffer over ws.max_outbuf");
    ws_close(c, WSLAY_CODE_POLICY_VIOLATION, "client too slow");
    return -1;
}

static void ws_input(struct conn *c)
{
    struct ws_conn *ws = W(c);
    if (ws_ctx(c) < 0) {
        conn_abort(c);
        return;
    }
    ws->in_recv = 1;
    int rc = wslay_event_recv(ws->ctx);
    ws->in_recv = 0;
    if (c->state == CONN_DEAD)
        return;
    /* wslay's frame layer rejects some malformed frames (non-minimal lengths,
     * oversized or fragmented control frames) with a callback failure we did
     * not cause, and queues a close without a status code. */
    if (rc == WSLAY_ERR_CALLBACK_FAILURE && !ws->recv_failed)
        ws->frame_error = 1;
    flush(c);
    if (check_outbuf(c) < 0) /* pongs to a client that pings and never reads */
        return;
    /* Peer closed, protocol error, message too big, or we closed while reading. */
    if (rc != 0 || !wslay_event_want_read(ws->ctx) || !ws->open)
        finish(c);
    else
        ws_release_ctx(c);
}

/* Closing: the peer's close frame is still owed. */
static int ws_awaits_peer(struct conn *c)
{
    wslay_event_context_ptr ctx = W(c)->ctx;
    return ctx && wslay_event_get_close_sent(ctx) && !wslay_event_get_close_received(ctx) &&
           wslay_event_want_read(ctx);
}

static void ping_if_due(struct conn *c, int64_t now_ms)
{
    struct ws_conn *w = W(c);
    if (now_ms - w->last_ping_ms < wss.lim.ping_interval_ms)
        return;
    struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"", 0};
    w->last_ping_ms = now_ms;
    if (ws_ctx(c) == 0 && wslay_event_queue_msg(w->ctx, &ping) == 0) {
        flush(c);
        ws_release_ctx(c);
    }
}

/* Ping a quiet client; drop one silent (not even a pong) past the idle timeout. */
static void ws_tick(struct conn *c, int64_t now_ms)
{
    if (!W(c)->open || c->state != CONN_OPEN)
        return;
    int64_t quiet = now_ms - c->last_rx_ms;
    if (quiet >= wss.lim.idle_timeout_ms) {
        metrics_count("ws_idle_closed", 1);
        conn_abort(c);
    } else if (quiet >= wss.lim.ping_interval_ms) {
        ping_if_due(c, now_ms);
    }
}

static void ws_drain(struct conn *c)
{
    ws_close(c, WSLAY_CODE_GOING_AWAY, "server shutting down");
}

static void ws_dead(struct conn *c)
{
    stop(W(c));
}

static void ws_release(struct conn *c)
{
    struct ws_conn *w = W(c);
    tell_now(w); /* a close still queued is told before the connection goes */
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    free(w);
    c->proto = NULL;
}

static const struct conn_ops ws_ops = {
    .input = ws_input,
    .awaits_peer = ws_awaits_peer,
    .tick = ws_tick,
    .drain = ws_drain,
    .dead = ws_dead,
    .release = ws_release,
};

/* ---- the API ---- */

int ws_init(struct event_base *base, const struct ws_limits *limits, const struct ws_events *ev)
{
    wss.lim = *limits;
    wss.ev = *ev;
    if (!(wss.teller = event_new(base, -1, 0, on_tell, NULL)))
        return CHATD_ENOMEM;
    return 0;
}

void ws_set_limits(const struct ws_limits *limits)
{
    wss.lim = *limits;
}

void ws_free(void)
{
    on_tell(-1, 0, NULL);
    if (wss.teller)
        event_free(wss.teller);
    memset(&wss, 0, sizeof wss);
}

int ws_attach(struct conn *c, void *user)
{
    struct ws_conn *w = calloc(1, sizeof *w);
    if (!w) {
        conn_abort(c);
        return CHATD_ENOMEM;
    }
    w->conn = c;
    w->user = user;
    w->open = 1;
    w->told = 0;
    w->last_ping_ms = c->last_rx_ms;
    conn_set_ops(c, &ws_ops, w);
    /* Reading resumes before the handshake's timeout is cleared: libevent
     * forgets a timeout only of an event that is pending, and would restore
     * it at the next read of one that is not, closing a quiet WebSocket after
     * ws.handshake_timeout. */
    conn_pause_read(c, 0);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    conn_manual_output(c); /* the 101 goes out with the first flush */
    metrics_count("ws_opened", 1);
    if (evbuffer_get_length(conn_input(c)) > 0) /* frames sent right behind the handshake */
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    return 0;
}

int ws_is_open(const struct conn *c)
{
    return c->ops == &ws_ops && c->state == CONN_OPEN && W(c)->open;
}

void *ws_user(const struct conn *c)
{
    return ws_is_open(c) ? W(c)->user : NULL;
}

int ws_send(struct conn *c, struct wsmsg *m)
{
    if (!ws_is_open(c))
        return -1;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (m->len <= WS_COPY_MAX) {
        /* Small frames are copied next to what is queued already: cheaper than
         * a reference (one allocation per frame and recipient) and one iovec
         * less in the write. */
        if (evbuffer_add(out, m->data, m->len) < 0)
            return -1;
    } else {
        m->refs++;
        if (evbuffer_add_reference(out, m->data, m->len, wsmsg_release, m) < 0) {
            m->refs--;
            return -1;
        }
    }
    if (m->sent)
        ++*m->sent;
    if (check_outbuf(c) == 0)
        conn_flush_soon(c);
    return 0;
}

void ws_close(struct conn *c, uint16_t code, const char *reason)
{
    if (c->ops != &ws_ops || c->state == CONN_DEAD)
        return;
    struct ws_conn *w = W(c);
    if (ws_ctx(c) < 0) {
        conn_abort(c);
        return;
    }
    if (!wslay_event_get_close_sent(w->ctx))
        wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    stop(w);
    flush(c);
    if (!w->in_recv)
        conn_close_after_write(c); /* else ws_input finishes the close */
}
