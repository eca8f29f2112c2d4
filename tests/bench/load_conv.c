/* Conversation traffic of chatd-load: see load_conv.h. Requests are built
 * with snprintf (a few hundred thousand a second at most); what comes back is
 * only counted, by type. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "load_conv.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct member {
    long long chan;
    int64_t top;       /* the highest messageSequence received */
    int64_t acked;     /* the highest sent in a READ_ACK */
    int64_t react_seq; /* the reaction it has on, while react_on */
    uint32_t unread;   /* deliveries since its last READ_ACK */
    uint8_t react_emoji, react_on;
    uint64_t typing_rx; /* NOTIFY_TYPING received */
};

/* thumbs up, heart, tears of joy, party popper, open mouth, folded hands */
static const char *const emoji[] = {"\xf0\x9f\x91\x8d", "\xe2\x9d\xa4\xef\xb8\x8f",
                                    "\xf0\x9f\x98\x82", "\xf0\x9f\x8e\x89",
                                    "\xf0\x9f\x98\xae", "\xf0\x9f\x99\x8f"};
#define N_EMOJI (sizeof emoji / sizeof emoji[0])

static struct {
    struct member *m; /* by WebSocket */
    int *list;        /* the members' WebSockets */
    int n;
    conv_send_fn send;
    uint64_t rng;
    int active;
    uint64_t writes;
    struct conv_counts c;
    uint64_t last_rx;
    /* the typing storm */
    double rate, duration;
    uint64_t t0, cursor, cap, per_member, first_ns, last_ns;
    int storm_over;
} S;

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64* */
static uint64_t rnd(void)
{
    uint64_t x = S.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    S.rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

void conv_init(int nconns, uint64_t seed, conv_send_fn send)
{
    memset(&S, 0, sizeof S);
    S.m = calloc(nconns > 0 ? (size_t)nconns : 1, sizeof *S.m);
    S.list = calloc(nconns > 0 ? (size_t)nconns : 1, sizeof *S.list);
    if (!S.m || !S.list) {
        fprintf(stderr, "chatd-load: out of memory\n");
        exit(2);
    }
    S.send = send;
    S.rng = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
    if (!S.rng)
        S.rng = 1;
}

void conv_member(int ci, long long channel_id)
{
    S.m[ci].chan = channel_id;
    S.list[S.n++] = ci;
}

void conv_set_active(int on)
{
    S.active = on;
}

static int send_fmt(int ci, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int send_fmt(int ci, const char *fmt, ...)
{
    char buf[320];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof buf)
        return -1;
    return S.send(ci, buf, (size_t)len) < 0 ? -1 : 0;
}

static int send_typing(int ci)
{
    return send_fmt(ci, "{\"type\":\"TYPING\",\"requestId\":\"c\",\"channelId\":%lld}",
                    S.m[ci].chan);
}

/* A random member who has seen a message (or has a reaction to take back)
 * turns its reaction on, on one of the last messages it received with a
 * random emoji, or off again: on and off alternate, so each one changes
 * something and is told to the others. */
static void react(void)
{
    int ci = -1;
    for (int tries = 0; tries < 8 && ci < 0; tries++) {
        int k = S.list[rnd() % (uint64_t)S.n];
        if (S.m[k].top > 0 || S.m[k].react_on)
            ci = k;
    }
    if (ci < 0)
        return;
    struct member *m = &S.m[ci];
    int on = !m->react_on;
    if (on) {
        int64_t back = (int64_t)(rnd() % CONV_RECENT);
        m->react_seq = m->top > back ? m->top - back : 1;
        m->react_emoji = (uint8_t)(rnd() % N_EMOJI);
    }
    if (send_fmt(ci,
                 "{\"type\":\"REACT_REQUEST\",\"requestId\":\"c\",\"channelId\":%lld,"
                 "\"messageSequence\":%lld,\"emoji\":\"%s\",\"on\":%s}",
                 m->chan, (long long)m->react_seq, emoji[m->react_emoji],
                 on ? "true" : "false") < 0)
        return;
    m->react_on = (uint8_t)on;
    S.c.reacts_sent++;
}

void conv_on_write(void)
{
    if (!S.active || S.n == 0)
        return;
    if (send_typing(S.list[rnd() % (uint64_t)S.n]) == 0)
        S.c.typing_sent++;
    if (++S.writes % CONV_REACT_EVERY == 0)
        react();
}

static int64_t int_field(const char *p, size_t n, const char *pat)
{
    size_t pl = strlen(pat);
    const char *at = memmem(p, n, pat, pl);
    if (!at)
        return -1;
    int64_t v = 0;
    for (const char *q = at + pl; q < p + n && *q >= '0' && *q <= '9'; q++)
        v = v * 10 + (*q - '0');
    return v;
}

void conv_on_message(int ci, const char *p, size_t n)
{
    struct member *m = &S.m[ci];
    int64_t seq = int_field(p, n, "\"messageSequence\":");
    if (seq > m->top)
        m->top = seq;
    if (!S.active || ++m->unread < CONV_READ_EVERY)
        return;
    m->unread = 0;
    if (m->top <= m->acked)
        return;
    if (send_fmt(ci,
                 "{\"type\":\"READ_ACK\",\"requestId\":\"c\",\"channelId\":%lld,"
                 "\"messageSequence\":%lld}",
                 m->chan, (long long)m->top) == 0) {
        m->acked = m->top;
        S.c.read_acks_sent++;
    }
}

#define IS(lit) (tl == sizeof lit - 1 && memcmp(type, lit, tl) == 0)

int conv_on_text(int ci, const char *type, size_t tl)
{
    if (IS("NOTIFY_TYPING")) {
        S.c.notify_typing++;
        S.m[ci].typing_rx++;
    } else if (IS("NOTIFY_READ")) {
        S.c.notify_read++;
    } else if (IS("NOTIFY_REACTION")) {
        S.c.notify_reaction++;
    } else if (IS("REACT_RESPONSE")) {
        S.c.react_responses++;
    } else {
        return 0;
    }
    S.last_rx = clock_ns();
    return 1;
}

void conv_on_error(void)
{
    S.c.errors++;
}

/* ---- the typing storm ---------------------------------------------------- */

void conv_storm_begin(double rate, double duration, uint64_t now)
{
    S.rate = rate;
    S.duration = duration;
    S.t0 = now;
    S.per_member = (uint64_t)ceil(rate * duration - 1e-9);
    S.cap = S.per_member * (uint64_t)S.n;
    S.cursor = 0;
    S.storm_over = S.n == 0;
}

/* TYPING number k (over all members, round robin) is due k / (rate * n)
 * seconds in: each member's come 1 / rate apart. A late tick sends what is
 * due at once, but nothing leaves after the duration. */
int conv_storm_tick(uint64_t now)
{
    if (S.storm_over)
        return 0;
    double el = (double)(now - S.t0) / 1e9;
    if (el >= S.duration || S.cursor >= S.cap) {
        S.storm_over = 1;
        return 0;
    }
    uint64_t due = (uint64_t)(el * S.rate * S.n) + 1;
    if (due > S.cap)
        due = S.cap;
    int sent = 0;
    while (S.cursor < due) {
        int ci = S.list[S.cursor++ % (uint64_t)S.n];
        if (send_typing(ci) == 0) {
            S.c.typing_sent++;
            sent++;
        }
        if (!S.first_ns)
            S.first_ns = now;
        S.last_ns = now;
    }
    return sent;
}

int conv_storm_over(void)
{
    return S.storm_over;
}

double conv_storm_span(void)
{
    return S.first_ns ? (double)(S.last_ns - S.first_ns) / 1e9 : 0;
}

uint64_t conv_storm_per_member(void)
{
    return S.per_member;
}

/* ---- counts -------------------------------------------------------------- */

const struct conv_counts *conv_counts(void)
{
    return &S.c;
}

struct conv_spread conv_typing_spread(void)
{
    struct conv_spread s = {S.n, UINT64_MAX, 0, 0};
    for (int i = 0; i < S.n; i++) {
        uint64_t v = S.m[S.list[i]].typing_rx;
        if (v < s.min)
            s.min = v;
        if (v > s.max)
            s.max = v;
        s.sum += v;
    }
    if (!S.n)
        s.min = 0;
    return s;
}

uint64_t conv_last_rx(void)
{
    return S.last_rx;
}

void conv_tally_add(struct conv_tally *t, const char *key, size_t len)
{
    if (len >= sizeof t->key[0])
        len = sizeof t->key[0] - 1;
    for (int i = 0; i < t->n; i++)
        if (strlen(t->key[i]) == len && memcmp(t->key[i], key, len) == 0) {
            t->count[i]++;
            return;
        }
    if (t->n == CONV_TALLY_MAX) {
        t->other++;
        return;
    }
    memcpy(t->key[t->n], key, len);
    t->key[t->n][len] = 0;
    t->count[t->n++] = 1;
}
