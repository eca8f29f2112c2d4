/* Loops with deadlines, connections over bufferevent pairs, and the client's
 * side of RFC 6455, for the unit tests. */
#include "support.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

struct event_base *support_base(void)
{
    evthread_use_pthreads();
    return event_base_new();
}

void support_base_free(struct event_base *base)
{
    /* A bufferevent freed while its callbacks were due is finalized by them. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_free(base);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct deadline *d = arg;
    (void)fd, (void)what;
    d->expired = 1;
}

void deadline_start(struct deadline *d, struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    d->expired = 0;
    d->ev = evtimer_new(base, deadline_cb, d);
    if (d->ev)
        evtimer_add(d->ev, &tv);
    else
        d->expired = 1;
}

void deadline_stop(struct deadline *d)
{
    if (d->ev)
        event_free(d->ev);
    d->ev = NULL;
}

void support_run_for(struct event_base *base, int ms)
{
    RUN_UNTIL(base, 0, ms);
}

void support_turn(struct event_base *base)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
}

struct conn *support_conn(struct event_base *base, struct bufferevent **end)
{
    struct bufferevent *pair[2];
    if (bufferevent_pair_new(base, 0, pair) != 0)
        return NULL;
    *end = pair[1];
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    struct conn *c = conn_adopt(pair[0], "127.0.0.1", CONN_LISTENER_MAIN, NULL, NULL);
    if (!c) {
        bufferevent_free(pair[1]);
        *end = NULL;
    }
    return c;
}

size_t support_pending(struct bufferevent *end)
{
    return evbuffer_get_length(bufferevent_get_input(end));
}

char *support_take_all(struct bufferevent *end, size_t *len)
{
    struct evbuffer *in = bufferevent_get_input(end);
    size_t n = evbuffer_get_length(in);
    char *text = malloc(n + 1);
    if (!text)
        return NULL;
    evbuffer_remove(in, text, n);
    text[n] = '\0';
    if (len)
        *len = n;
    return text;
}

void support_send_eof(struct bufferevent *end)
{
    bufferevent_flush(end, EV_WRITE, BEV_FINISHED);
}

/* ---- the client's side of RFC 6455 ---- */

size_t wsc_build(unsigned char *out, int fin, int opcode, const void *data, size_t len)
{
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t n = 0;
    out[n++] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[n++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        out[n++] = 0x80 | 126;
        out[n++] = (unsigned char)(len >> 8);
        out[n++] = (unsigned char)len;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[n++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    memcpy(out + n, mask, 4);
    n += 4;
    const unsigned char *d = data;
    for (size_t i = 0; i < len; i++)
        out[n + i] = d[i] ^ mask[i % 4];
    return n + len;
}

void wsc_send(struct bufferevent *end, int fin, int opcode, const void *data, size_t len)
{
    unsigned char *frame = malloc(len + 14);
    if (!frame)
        abort();
    size_t n = wsc_build(frame, fin, opcode, data, len);
    bufferevent_write(end, frame, n);
    free(frame);
}

void wsc_send_text(struct bufferevent *end, const char *text)
{
    wsc_send(end, 1, WSC_TEXT, text, strlen(text));
}

void wsc_send_close(struct bufferevent *end, uint16_t code, const char *reason)
{
    unsigned char body[127];
    size_t r = reason ? strlen(reason) : 0;
    if (r > sizeof body - 2)
        r = sizeof body - 2;
    body[0] = (unsigned char)(code >> 8);
    body[1] = (unsigned char)code;
    if (r)
        memcpy(body + 2, reason, r);
    wsc_send(end, 1, WSC_CLOSE, body, r + 2);
}

int wsc_recv(struct bufferevent *end, struct wsc_frame *f)
{
    struct evbuffer *in = bufferevent_get_input(end);
    size_t avail = evbuffer_get_length(in);
    memset(f, 0, sizeof *f);
    if (avail < 2)
        return 0;
    unsigned char h[14];
    evbuffer_copyout(in, h, avail < sizeof h ? avail : sizeof h);
    size_t hdr = 2;
    uint64_t len = h[1] & 0x7f;
    if (len == 126) {
        hdr = 4;
        if (avail < hdr)
            return 0;
        len = (uint64_t)h[2] << 8 | h[3];
    } else if (len == 127) {
        hdr = 10;
        if (avail < hdr)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
    }
    int masked = (h[1] & 0x80) != 0;
    size_t mask_at = hdr;
    if (masked)
        hdr += 4;
    if (avail < hdr + len)
        return 0;
    unsigned char *frame = malloc(hdr + len + 1);
    if (!frame)
        abort();
    evbuffer_remove(in, frame, hdr + len);
    f->fin = (frame[0] & 0x80) != 0;
    f->opcode = frame[0] & 0x0f;
    f->masked = masked;
    f->len = (size_t)len;
    f->data = malloc(f->len + 1);
    if (!f->data)
        abort();
    for (size_t i = 0; i < f->len; i++)
        f->data[i] = frame[hdr + i] ^ (masked ? frame[mask_at + i % 4] : 0);
    f->data[f->len] = '\0';
    free(frame);
    return 1;
}

int wsc_wait(struct event_base *base, struct bufferevent *end, struct wsc_frame *f, int ms)
{
    int got = 0;
    RUN_UNTIL(base, (got = wsc_recv(end, f)), ms);
    return got;
}

void wsc_frame_free(struct wsc_frame *f)
{
    free(f->data);
    f->data = NULL;
}

int wsc_close_code(const struct wsc_frame *f)
{
    if (f->opcode != WSC_CLOSE || f->len < 2)
        return -1;
    return f->data[0] << 8 | f->data[1];
}
