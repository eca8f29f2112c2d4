#include "ws.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "config.h"
#include "conn.h"
#include "dispatch.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "session.h"

/* Frames up to this size are copied into a recipient's output, larger ones
 * shared by reference. */
#define WS_COPY_MAX 1024

struct ws_conn {
    wslay_event_context_ptr ctx; /* NULL between messages: see ws_release_ctx */
    int frame_open;    /* a frame's header came, its end not yet */
    int msg_open;      /* a fragmented data message is in progress */
    uint64_t given;    /* bytes handed to wslay since the context was made */
    uint64_t framed;   /* bytes of the frames it finished */
    uint64_t frame_bytes; /* size of the frame being received, header included */
    int64_t last_ping_ms;
    int in_recv;       /* inside wslay_event_recv: queue, do not send */
    int recv_failed;   /* our recv callback reported a real error */
    int frame_error;   /* wslay rejected a frame: its close must say 1002 */
};

int utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (b >= 0xc2 && b <= 0xdf) {
            n = 1;
            cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
            n = 2;
            cp = b & 0x0f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            n = 3;
            cp = b & 0x07;
        } else {
            return 0; /* continuation byte, overlong lead (c0, c1) or > f4 */
        }
        if (i + n >= len)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
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

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    struct conn *c = user;
    (void)flags;
    int n = evbuffer_remove(conn_input(c), buf, len);
    if (n < 0)
        c->ws->recv_failed = 1;
    else
        c->ws->given += (uint64_t)n;
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
    if (c->ws->frame_error && len == 2 && memcmp(data, empty_close, 2) == 0) {
        /* wslay closes after a malformed frame without a status code; RFC
         * 6455 7.4.1 asks for 1002, so that is what goes out. */
        c->ws->frame_error = 0;
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
    if (c->ws && c->ws->ctx && !c->ws->in_recv && c->state != CONN_DEAD)
        wslay_event_send(c->ws->ctx);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    struct conn *c = user;
    (void)ctx;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length == 1)
        c->ws->frame_error = 1; /* a status code is two bytes: answer 1002 */
    if (c->state != CONN_WS || wslay_is_ctrl_frame(arg->opcode))
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
    dispatch_text(c, (const char *)arg->msg, arg->msg_length);
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    struct conn *c = user;
    (void)ctx;
    /* Client frames are masked (4 bytes) with a minimal length encoding:
     * wslay refuses the others. */
    uint64_t len = arg->payload_length;
    c->ws->frame_bytes = 2 + 4 + (len < 126 ? 0 : len < 65536 ? 2 : 8) + len;
    c->ws->frame_open = 1;
    if (!wslay_is_ctrl_frame(arg->opcode))
        c->ws->msg_open = !arg->fin;
}

static void on_frame_end(wslay_event_context_ptr ctx, void *user)
{
    struct conn *c = user;
    (void)ctx;
    c->ws->frame_open = 0;
    c->ws->framed += c->ws->frame_bytes;
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
    struct ws_conn *ws = c->ws;
    if (ws->ctx)
        return 0;
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, c) != 0) {
        ws->ctx = NULL;
        return CHATD_ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx,
                                               (uint64_t)router_settings()->ws_max_message);
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
    struct ws_conn *ws = c->ws;
    if (!ws->ctx || c->state != CONN_WS || ws->frame_open || ws->msg_open ||
        ws->given != ws->framed || /* part of a frame header waits inside wslay */
        wslay_event_want_write(ws->ctx) || !wslay_event_want_read(ws->ctx) ||
        wslay_event_get_close_sent(ws->ctx) || wslay_event_get_close_received(ws->ctx))
        return;
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
    ws->given = ws->framed = 0;
}

void ws_upgrade(struct chatd_http *req, struct session *s)
{
    struct conn *c = conn_find(req->conn_id);
    char accept[29];
    if (!c)
        goto done;
    struct ws_conn *ws = calloc(1, sizeof *ws);
    if (!ws) {
        http_respond_error(req, CHATD_ERR_INTERNAL, 500, "out of memory");
        return;
    }
    ws_accept_key(http_header_get(req, "Sec-WebSocket-Key"), accept);
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        accept);
    c->pending = NULL;
    c->ws = ws;
    c->state = CONN_WS;
    c->deadline_ms = 0;
    ws->last_ping_ms = conn_now_ms();
    /* Reading resumes before the handshake's timeout is cleared: libevent
     * forgets a timeout only of an event that is pending, and would restore
     * it at the next read of one that is not, closing a quiet WebSocket after
     * ws.handshake_timeout. */
    conn_pause_read(c, 0);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    conn_manual_output(c); /* the 101 goes out with the first flush */
    metrics_count("ws_opened", 1);
    session_attach(c, s);
done:
    http_request_free(req);
}

/* A client whose unread output passed ws.max_outbuf is closed (1008), so one
 * slow reader never holds memory or others up. */
static int check_outbuf(struct conn *c)
{
    if (c->state != CONN_WS ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) <=
            (size_t)router_settings()->ws_max_outbuf)
        return 0;
    metrics_count("ws_slow_reader_closed", 1);
    log_info("conn %llu: closed, outgoing buffer over ws.max_outbuf", (unsigned long long)c->id);
    ws_close(c, WSLAY_CODE_POLICY_VIOLATION, "client too slow");
    return -1;
}

void ws_conn_read(struct conn *c)
{
    struct ws_conn *ws = c->ws;
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
    if (rc != 0 || !wslay_event_want_read(ws->ctx) || c->state == CONN_CLOSING)
        conn_close_after_write(c);
    else
        ws_release_ctx(c);
}

int ws_send(struct conn *c, struct wsmsg *m)
{
    if (c->state != CONN_WS)
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
    METRICS_ADD("ws_messages_out", 1);
    if (check_outbuf(c) == 0)
        conn_flush_soon(c);
    return 0;
}

void ws_close(struct conn *c, uint16_t code, const char *reason)
{
    if (!c->ws || (c->state != CONN_WS && c->state != CONN_CLOSING))
        return;
    if (ws_ctx(c) < 0) {
        conn_abort(c);
        return;
    }
    if (!wslay_event_get_close_sent(c->ws->ctx))
        wslay_event_queue_close(c->ws->ctx, code, (const uint8_t *)reason,
                                reason ? strlen(reason) : 0);
    if (c->state == CONN_WS)
        session_detach(c);
    flush(c);
    if (!c->ws->in_recv)
        conn_close_after_write(c);
    else
        c->state = CONN_CLOSING; /* ws_conn_read finishes the close */
}

void ws_ping_if_due(struct conn *c, int64_t now_ms, int64_t interval_ms)
{
    if (now_ms - c->ws->last_ping_ms < interval_ms)
        return;
    struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"", 0};
    c->ws->last_ping_ms = now_ms;
    if (ws_ctx(c) == 0 && wslay_event_queue_msg(c->ws->ctx, &ping) == 0) {
        flush(c);
        ws_release_ctx(c);
    }
}

int ws_wants_close_frame(struct conn *c)
{
    wslay_event_context_ptr ctx = c->ws->ctx;
    return ctx && wslay_event_get_close_sent(ctx) && !wslay_event_get_close_received(ctx) &&
           wslay_event_want_read(ctx);
}

void ws_conn_free(struct conn *c)
{
    if (!c->ws)
        return;
    if (c->ws->ctx)
        wslay_event_context_free(c->ws->ctx);
    free(c->ws);
    c->ws = NULL;
}
