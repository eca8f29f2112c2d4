/* chatd-load: one-process load generator for chatd.
 *
 * Logs users in over HTTP (a small keep-alive client), opens authenticated
 * WebSockets from several loopback source addresses, sets up friends and
 * channels through the protocol, then drives one scenario for a bounded time
 * and prints one table (and JSON with --json); with --tls over https and wss.
 * See docs/BENCHMARKS.md.
 *
 * The hot path is kept cheap: every writer has a pre-built WRITE_MESSAGE whose
 * send timestamp is patched in place and masked straight into the output
 * buffer (one reservation per frame); incoming frames are parsed in place and
 * only the "type" and the timestamp fields are looked at. Setup messages go
 * through jansson, which is fine at setup rates. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "load_conv.h"
#include "load_hist.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define CONN_CAP 1000000    /* WebSockets at most, whatever is asked */
#define DURATION_CAP 3600.0 /* seconds of load at most */
#define MAX_TARGETS 64
#define MAX_PIDS 64
#define MAX_FRAME (16u << 20) /* a longer incoming frame is a protocol error */
#define TS_DIGITS 19
#define PASSWORD "chatd-load-password"
#define WS_PATH "/ws/v1/message"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- options ------------------------------------------------------------- */

enum scenario { SC_IDLE, SC_DIRECT, SC_FANOUT, SC_MIXED, SC_TYPING, N_SCENARIOS };
static const char *scenario_names[] = {"idle", "direct", "fanout", "mixed", "typing"};

static struct {
    int scenario;
    int cluster; /* --scenario cluster: direct or fanout over several targets */
    int connections, pairs, members, writers, users;
    int one_way;
    double writer_share, zipf;
    int min_size, max_size;
    double duration, warmup, drain, settle, setup_timeout;
    double rate;
    int window, max_inflight, size;
    int sources;
    struct in_addr source_base;
    int connect_window, setup_window, http_conns, create_max;
    int pids[MAX_PIDS], npids;
    const char *json;
    unsigned long long seed;
    int quiet;
    int busy_poll;
    int chatter;        /* fanout: the members type, ack what they read and react */
    double typing_rate; /* typing: TYPING per second per member */
    double rest;        /* seconds held after the drain, before the last server sample */
    int tls;            /* https and wss, the server's certificate not verified */
} O;

static SSL_CTX *tls_ctx;  /* --tls: the client side of every connection */
static char tls_seen[96]; /* --tls: the version and cipher of the first handshake */

static struct sockaddr_in targets[MAX_TARGETS];
static char target_names[MAX_TARGETS][80];
static int ntargets;

/* ---- state --------------------------------------------------------------- */

struct user {
    char name[33];
    char invite[16];
    char *token;
    long long id;
    int conn; /* the WebSocket its setup requests go through */
};

struct chan {
    long long id;
    int *members; /* user indices; members[0] creates the channel */
    int n;
    int ncreate; /* members[0..ncreate) are in the CREATE (friends of the creator) */
    int direct;
    int entered; /* WebSockets entered in it */
    char invite[16];
};

struct writer {
    int conn;
    uint32_t inflight;
    uint64_t sent;
    char *tmpl; /* the WRITE_MESSAGE text, patched in place per send */
    uint32_t len, off_req, off_content;
};

enum { C_NEW, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD };

struct wconn {
    struct bufferevent *bev;
    int user, chan, writer; /* chan, writer: -1 when none */
    uint8_t state, target;
    char key[25];
    char *frag; /* a fragmented message being put together (chatd never sends one) */
    size_t frag_len;
};

static struct event_base *base;
static struct user *users;
static int nusers;
static struct chan *chans;
static int nchans;
static struct writer *writers;
static int nwriters;
static struct wconn *conns;
static int nconns;
static struct {
    int a, b;
} * edges;
static int nedges;
static struct {
    int user, chan;
} * joins;
static int njoins;
static int nsources;
static char run_tag[8];

struct counters {
    uint64_t sent, acked, delivered, expected;
    uint64_t write_errors, rate_limited, other_errors, disconnects, pings, notices;
};
static struct counters ctr, ctr_meas0, ctr_meas1;
static struct conv_counts cv_meas0, cv_meas1;
static struct conv_tally err_codes, close_codes; /* ERRORs by code, closes by the server */
static struct load_hist h_ack, h_deliv;
static uint64_t inflight_total;
static int running; /* writers send */
static int exit_code;
static int measuring; /* latencies count */

/* ---- phases and timing --------------------------------------------------- */

enum phase {
    PH_INIT,
    PH_HTTP,
    PH_CONNECT,
    PH_PROBE,
    PH_FRIENDS,
    PH_CREATE,
    PH_JOIN,
    PH_ENTER,
    PH_SETTLE,
    PH_WARMUP,
    PH_RUN,
    PH_DRAIN,
    PH_REST,
    PH_END
};
static const char *phase_names[] = {"init",   "login", "connect", "probe",  "friends",
                                    "create", "join",  "enter",   "settle", "warmup",
                                    "run",    "drain", "rest",    "end"};
static int phase = PH_INIT;
static uint64_t phase_t0, prog_t0;
static double phase_secs[PH_END + 1];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timeval tv_of(double s)
{
    struct timeval tv;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "chatd-load: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (phase %s, %.1f s in)\n", phase_names[phase],
            (double)(now_ns() - prog_t0) / 1e9);
    exit(2);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (O.quiet)
        return;
    va_list ap;
    fprintf(stderr, "chatd-load: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory");
    return p;
}

/* xorshift64*: masks, handshake keys, layout choices */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_layout = 1;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- /proc of the server ------------------------------------------------- */

struct proc_sample {
    long rss_kib, hwm_kib;
    double cpu_s;
    int ok;
};

static int read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = 0;
    return 0;
}

static struct proc_sample server_sample(void)
{
    struct proc_sample s = {0, 0, 0, O.npids > 0};
    static long tick;
    if (!tick)
        tick = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < O.npids; i++) {
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%d/status", O.pids[i]);
        if (read_file(path, buf, sizeof buf) < 0) {
            s.ok = 0;
            continue;
        }
        const char *p = strstr(buf, "VmRSS:");
        if (p)
            s.rss_kib += strtol(p + 6, NULL, 10);
        p = strstr(buf, "VmHWM:");
        if (p)
            s.hwm_kib += strtol(p + 6, NULL, 10);
        snprintf(path, sizeof path, "/proc/%d/stat", O.pids[i]);
        if (read_file(path, buf, sizeof buf) < 0) {
            s.ok = 0;
            continue;
        }
        /* the command may hold spaces and ')': fields start after the last ')' */
        char *q = strrchr(buf, ')');
        if (!q)
            continue;
        q++;
        unsigned long long ut = 0, st = 0;
        for (int field = 0; field <= 12 && *q; field++) {
            while (*q == ' ')
                q++;
            char *end;
            unsigned long long v = strtoull(q, &end, 10);
            if (field == 11)
                ut = v;
            if (field == 12)
                st = v;
            q = end;
            while (*q && *q != ' ')
                q++;
        }
        s.cpu_s += (double)(ut + st) / (double)tick;
    }
    return s;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static struct proc_sample srv_start, srv_before_ws, srv_connected, srv_ready, srv_meas0, srv_meas1,
    srv_end;
static double self_cpu0, self_cpu1;
/* --busy-poll: callbacks that did work, and the time spent in loop turns
 * that ran none (polling), to tell the generator's work from its spinning */
static uint64_t work_cbs;
static double idle_s, idle_s0, idle_s1;
static uint64_t meas_t0, meas_t1, run_t0;

/* ---- small text helpers -------------------------------------------------- */

static void put_ts(char *at, uint64_t v)
{
    for (int i = TS_DIGITS - 1; i >= 0; i--) {
        at[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

static uint64_t get_ts(const char *at, const char *end)
{
    if (end - at < TS_DIGITS)
        return UINT64_MAX;
    uint64_t v = 0;
    for (int i = 0; i < TS_DIGITS; i++) {
        unsigned d = (unsigned char)at[i] - '0';
        if (d > 9)
            return UINT64_MAX;
        v = v * 10 + d;
    }
    return v;
}

/* The string value of a top-level-looking field: `"key":"VALUE"`, found by a
 * plain search (chatd writes compact JSON). Returns the value's start. */
static const char *str_field(const char *p, size_t n, const char *pat, size_t plen, size_t *vlen)
{
    const char *at = memmem(p, n, pat, plen);
    if (!at)
        return NULL;
    const char *v = at + plen, *end = p + n;
    const char *q = memchr(v, '"', (size_t)(end - v));
    if (!q)
        return NULL;
    *vlen = (size_t)(q - v);
    return v;
}
#define FIELD(p, n, lit, vl) str_field((p), (n), lit, sizeof lit - 1, (vl))

/* ---- WebSocket frames ---------------------------------------------------- */

/* One masked client frame, reserved and written in one piece. */
static int ws_send(struct wconn *c, int opcode, const void *payload, size_t len)
{
    if (!c->bev || c->state == C_DEAD)
        return -1;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
    size_t total = hl + 4 + len;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1 || v.iov_len < total)
        return -1;
    unsigned char *d = v.iov_base;
    d[0] = (unsigned char)(0x80 | opcode);
    if (hl == 2) {
        d[1] = (unsigned char)(0x80 | len);
    } else if (hl == 4) {
        d[1] = 0x80 | 126;
        d[2] = (unsigned char)(len >> 8);
        d[3] = (unsigned char)len;
    } else {
        d[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            d[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    uint32_t key = (uint32_t)rng_next(&rng_state);
    unsigned char kb[4];
    memcpy(kb, &key, 4);
    memcpy(d + hl, kb, 4);
    uint64_t k64 = (uint64_t)key | (uint64_t)key << 32;
    const unsigned char *src = payload;
    unsigned char *dst = d + hl + 4;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; i++)
        dst[i] = src[i] ^ kb[i & 3];
    v.iov_len = total;
    return evbuffer_commit_space(out, &v, 1);
}

/* The conversation's requests (load_conv.c) go out here. */
static int conv_send(int ci, const char *text, size_t len)
{
    if (conns[ci].state != C_OPEN)
        return -1;
    return ws_send(&conns[ci], 1, text, len);
}

static int ws_send_json(int ci, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text)
        die("out of memory");
    int rc = ws_send(&conns[ci], 1, text, strlen(text));
    free(text);
    return rc;
}

/* ---- forward declarations ------------------------------------------------ */

static void phase_next(void);
static void on_text(int ci, const char *p, size_t n);
static void conn_start(int ci);
static void writer_send(int w, uint64_t ts);
static void finish(void);

/* ---- setup operations ---------------------------------------------------- */

enum { OPK_PROBE, OPK_FRIEND, OPK_CREATE, OPK_JOIN, OPK_ENTER };

struct op {
    int a, b;
    uint8_t kind, step;
};
static struct op *ops;
static int nops, op_next, op_inflight, op_done;

static void op_send(int k)
{
    struct op *o = &ops[k];
    char rid[32];
    snprintf(rid, sizeof rid, "s%d.%d", phase, k);
    json_t *m = NULL;
    int ci = -1;
    switch (o->kind) {
    case OPK_PROBE:
        ci = o->a;
        m = json_pack("{s:s}", "type", "FETCH_USER_INVITECODE_REQUEST");
        break;
    case OPK_FRIEND:
        if (o->step == 0) {
            ci = users[o->a].conn;
            m = json_pack("{s:s, s:s}", "type", "INVITE_REQUEST", "userInviteCode",
                          users[o->b].invite);
        } else {
            ci = users[o->b].conn;
            m = json_pack("{s:s, s:s}", "type", "ACCEPT_REQUEST", "username", users[o->a].name);
        }
        break;
    case OPK_CREATE: {
        struct chan *ch = &chans[o->a];
        ci = users[ch->members[0]].conn;
        char title[32];
        snprintf(title, sizeof title, "load %s %d", run_tag, o->a);
        if (o->step == 1) {
            m = json_pack("{s:s, s:I}", "type", "FETCH_CHANNEL_INVITECODE_REQUEST", "channelId",
                          (json_int_t)ch->id);
        } else if (ch->direct) {
            m = json_pack("{s:s, s:s, s:s}", "type", "CREATE_REQUEST", "title", title,
                          "participantUsername", users[ch->members[1]].name);
        } else {
            json_t *names = json_array();
            for (int i = 1; i < ch->ncreate; i++)
                json_array_append_new(names, json_string(users[ch->members[i]].name));
            m = json_pack("{s:s, s:s, s:o}", "type", "CREATE_REQUEST", "title", title,
                          "participantUsernames", names);
        }
        break;
    }
    case OPK_JOIN:
        ci = users[o->a].conn;
        m = json_pack("{s:s, s:s}", "type", "JOIN_REQUEST", "inviteCode", chans[o->b].invite);
        break;
    case OPK_ENTER:
        ci = o->a;
        m = json_pack("{s:s, s:I}", "type", "ENTER_REQUEST", "channelId",
                      (json_int_t)chans[conns[o->a].chan].id);
        break;
    }
    if (!m)
        die("out of memory");
    json_object_set_new(m, "requestId", json_string(rid));
    if (ws_send_json(ci, m) < 0)
        die("cannot send a setup request on connection %d", ci);
}

static void ops_pump(void)
{
    while (op_inflight < O.setup_window && op_next < nops) {
        op_inflight++;
        op_send(op_next++);
    }
}

static void ops_begin(int n)
{
    nops = n;
    op_next = op_inflight = op_done = 0;
    if (n == 0) {
        phase_next();
        return;
    }
    ops_pump();
}

static void op_finished(void)
{
    op_inflight--;
    op_done++;
    if (op_done == nops) {
        phase_next();
        return;
    }
    ops_pump();
}

/* An answer to a setup request: ("s<phase>.<op>"). */
static void op_answer(int ci, const char *type, size_t tl, const char *p, size_t n, int k)
{
    struct op *o = &ops[k];
    const char *want = NULL;
    switch (o->kind) {
    case OPK_PROBE:
        want = "FETCH_USER_INVITECODE_RESPONSE";
        break;
    case OPK_FRIEND:
        want = o->step == 0 ? "INVITE_RESPONSE" : "ACCEPT_RESPONSE";
        break;
    case OPK_CREATE:
        want = o->step == 0 ? "CREATE_RESPONSE" : "FETCH_CHANNEL_INVITECODE_RESPONSE";
        break;
    case OPK_JOIN:
        want = "JOIN_RESPONSE";
        break;
    case OPK_ENTER:
        want = "ENTER_RESPONSE";
        break;
    }
    if (tl != strlen(want) || memcmp(type, want, tl) != 0) {
        if (tl == 5 && memcmp(type, "ERROR", 5) == 0)
            die("setup request failed on connection %d: %.*s", ci, (int)(n > 400 ? 400 : n), p);
        die("setup: expected %s, got %.*s", want, (int)(n > 400 ? 400 : n), p);
    }
    if (o->kind == OPK_FRIEND && o->step == 0) {
        o->step = 1;
        op_send(k);
        return;
    }
    if (o->kind == OPK_CREATE) {
        struct chan *ch = &chans[o->a];
        json_error_t err;
        json_t *j = json_loadb(p, n, 0, &err);
        if (!j)
            die("setup: unreadable answer %.*s", (int)(n > 400 ? 400 : n), p);
        if (o->step == 0) {
            json_t *id = json_object_get(json_object_get(j, "channelId"), "id");
            if (!json_is_integer(id))
                die("setup: CREATE_RESPONSE without channelId.id");
            ch->id = (long long)json_integer_value(id);
            if (ch->ncreate < ch->n) {
                json_decref(j);
                o->step = 1;
                op_send(k);
                return;
            }
        } else {
            const char *code = json_string_value(json_object_get(j, "inviteCode"));
            if (!code || strlen(code) >= sizeof ch->invite)
                die("setup: no channel invite code");
            strcpy(ch->invite, code);
        }
        json_decref(j);
    }
    if (o->kind == OPK_ENTER)
        chans[conns[ci].chan].entered++;
    op_finished();
}

/* ---- the load ------------------------------------------------------------ */

static void writer_build(int w)
{
    struct writer *wr = &writers[w];
    struct wconn *c = &conns[wr->conn];
    size_t pad = (size_t)O.size - TS_DIGITS - 1;
    size_t cap = 160 + (size_t)O.size;
    char *t = xcalloc(1, cap);
    int n = snprintf(t, cap, "{\"type\":\"WRITE_MESSAGE\",\"channelId\":%lld,\"requestId\":\"w",
                     chans[c->chan].id);
    wr->off_req = (uint32_t)n;
    memset(t + n, '0', TS_DIGITS);
    n += TS_DIGITS;
    n += snprintf(t + n, cap - (size_t)n, "\",\"content\":\"");
    wr->off_content = (uint32_t)n;
    memset(t + n, '0', TS_DIGITS);
    n += TS_DIGITS;
    t[n++] = ' ';
    for (size_t i = 0; i < pad; i++)
        t[n++] = (char)('a' + (i % 26));
    n += snprintf(t + n, cap - (size_t)n, "\"}");
    wr->tmpl = t;
    wr->len = (uint32_t)n;
}

static void writer_send(int w, uint64_t ts)
{
    struct writer *wr = &writers[w];
    struct wconn *c = &conns[wr->conn];
    if (c->state != C_OPEN)
        return;
    put_ts(wr->tmpl + wr->off_req, ts);
    put_ts(wr->tmpl + wr->off_content, ts);
    if (ws_send(c, 1, wr->tmpl, wr->len) < 0)
        return;
    wr->inflight++;
    wr->sent++;
    inflight_total++;
    ctr.sent++;
    if (O.chatter)
        conv_on_write();
}

static void on_ack(int ci, const char *p, size_t n)
{
    struct wconn *c = &conns[ci];
    ctr.acked++;
    if (c->writer >= 0) {
        struct writer *wr = &writers[c->writer];
        if (wr->inflight) {
            wr->inflight--;
            inflight_total--;
        }
        /* every WebSocket entered in the channel but the writer's gets it */
        if (c->chan >= 0 && chans[c->chan].entered > 1)
            ctr.expected += (uint64_t)chans[c->chan].entered - 1;
    }
    size_t vl;
    const char *v = FIELD(p, n, "\"requestId\":\"w", &vl);
    uint64_t now = now_ns();
    if (v) {
        uint64_t ts = get_ts(v, v + vl);
        if (ts != UINT64_MAX && measuring && now >= ts)
            load_hist_record(&h_ack, now - ts);
    }
    if (running && O.rate <= 0 && c->writer >= 0)
        writer_send(c->writer, now);
}

static void on_notify(int ci, const char *p, size_t n)
{
    ctr.delivered++;
    if (O.chatter)
        conv_on_message(ci, p, n);
    size_t vl;
    const char *v = FIELD(p, n, "\"content\":\"", &vl);
    if (v && measuring) {
        uint64_t ts = get_ts(v, v + vl), now = now_ns();
        if (ts != UINT64_MAX && now >= ts)
            load_hist_record(&h_deliv, now - ts);
    }
}

static void on_error(int ci, const char *p, size_t n)
{
    size_t vl, cl = 0;
    const char *rid = FIELD(p, n, "\"requestId\":\"", &vl);
    const char *code = FIELD(p, n, "\"code\":\"", &cl);
    if (code)
        conv_tally_add(&err_codes, code, cl);
    else
        conv_tally_add(&err_codes, "(none)", 6);
    if (rid && vl == 1 && rid[0] == 'c') {
        conv_on_error(); /* TYPING, READ_ACK or REACT_REQUEST refused */
        static int shown_conv;
        if (shown_conv++ < 3)
            note("conversation request refused: %.*s", (int)(n > 300 ? 300 : n), p);
        return;
    }
    if (rid && vl > 0 && rid[0] == 'w') {
        struct wconn *c = &conns[ci];
        ctr.write_errors++;
        if (code && cl == 12 && memcmp(code, "RATE_LIMITED", 12) == 0)
            ctr.rate_limited++;
        static int shown;
        if (shown++ < 3)
            note("write refused: %.*s", (int)(n > 300 ? 300 : n), p);
        if (c->writer >= 0) {
            struct writer *wr = &writers[c->writer];
            if (wr->inflight) {
                wr->inflight--;
                inflight_total--;
            }
            if (running && O.rate <= 0)
                writer_send(c->writer, now_ns());
        }
        return;
    }
    ctr.other_errors++;
    static int shown_other;
    if (shown_other++ < 3)
        note("server error: %.*s", (int)(n > 300 ? 300 : n), p);
}

static void on_text(int ci, const char *p, size_t n)
{
    size_t tl;
    const char *type = FIELD(p, n, "\"type\":\"", &tl);
    if (!type) {
        ctr.other_errors++;
        return;
    }
    if (tl == 17 && memcmp(type, "WRITE_MESSAGE_ACK", 17) == 0) {
        on_ack(ci, p, n);
        return;
    }
    if (tl == 14 && memcmp(type, "NOTIFY_MESSAGE", 14) == 0) {
        on_notify(ci, p, n);
        return;
    }
    if (conv_on_text(ci, type, tl))
        return;
    size_t vl;
    const char *rid = FIELD(p, n, "\"requestId\":\"s", &vl);
    if (rid) {
        char buf[32];
        int ph, k;
        if (vl < sizeof buf) {
            memcpy(buf, rid, vl);
            buf[vl] = 0;
            if (sscanf(buf, "%d.%d", &ph, &k) == 2 && ph == phase && k >= 0 && k < nops) {
                op_answer(ci, type, tl, p, n, k);
                return;
            }
        }
        ctr.notices++; /* a late answer of an earlier phase */
        return;
    }
    if (tl == 5 && memcmp(type, "ERROR", 5) == 0) {
        on_error(ci, p, n);
        return;
    }
    ctr.notices++; /* ASK_INVITE, NOTIFY_ACCEPT, NOTIFY_JOIN, ... */
}

/* ---- connections --------------------------------------------------------- */

static int conns_pending, conns_started, conns_open;

static struct sockaddr_in source_of(int k)
{
    struct sockaddr_in s;
    memset(&s, 0, sizeof s);
    s.sin_family = AF_INET;
    s.sin_addr.s_addr = htonl(ntohl(O.source_base.s_addr) + (uint32_t)k);
    return s;
}

/* --tls: fd connecting to target, wrapped in TLS; BEV_EVENT_CONNECTED comes
 * once the handshake is done. What is written before goes out after it. */
static struct bufferevent *tls_connect(int fd, int target, void *arg, bufferevent_data_cb rd,
                                       bufferevent_event_cb ev)
{
    if (connect(fd, (struct sockaddr *)&targets[target], sizeof targets[target]) < 0 &&
        errno != EINPROGRESS)
        die("connect to %s: %s", target_names[target], strerror(errno));
    SSL *ssl = SSL_new(tls_ctx);
    struct bufferevent *bev =
        ssl ? bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE)
            : NULL;
    if (!bev)
        die("out of memory");
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_setcb(bev, rd, NULL, ev, arg);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return bev;
}

/* --tls: the client context, TLS 1.2 and later, trusting any certificate
 * (chatd's on loopback, typically self-signed). */
static SSL_CTX *tls_client_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        die("cannot make a TLS context");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* thousands of idle connections */
    return ctx;
}

/* --tls: what the first handshake agreed, for the table. */
static void tls_note(struct bufferevent *bev)
{
    SSL *ssl = tls_seen[0] ? NULL : bufferevent_openssl_get_ssl(bev);
    if (ssl)
        snprintf(tls_seen, sizeof tls_seen, "%s %s", SSL_get_version(ssl),
                 SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}

/* A non-blocking TCP socket bound to source address k (any port, chosen at
 * connect time so one address serves many destinations), connecting. */
static struct bufferevent *tcp_connect(int source, int target, void *arg, bufferevent_data_cb rd,
                                       bufferevent_event_cb ev)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s (raise ulimit -n?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (source >= 0) {
        struct sockaddr_in s = source_of(source);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&s, sizeof s) < 0) {
            char a[32];
            inet_ntop(AF_INET, &s.sin_addr, a, sizeof a);
            die("bind to %s: %s", a, strerror(errno));
        }
    }
    if (O.tls)
        return tls_connect(fd, target, arg, rd, ev);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        die("out of memory");
    bufferevent_setcb(bev, rd, NULL, ev, arg);
    if (bufferevent_socket_connect(bev, (struct sockaddr *)&targets[target],
                                   sizeof targets[target]) < 0)
        die("connect to %s: %s", target_names[target], strerror(errno));
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return bev;
}

/* Why a connection failed: OpenSSL's reason when TLS has one, else errno's. */
static const char *bev_error(struct bufferevent *bev)
{
    unsigned long e, first = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (ERR_GET_LIB(e) != 0)
            first = e; /* they come out last first */
    const char *why = first ? ERR_reason_error_string(first) : NULL;
    return why ? why : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
}

static void conn_drop(int ci, const char *why)
{
    struct wconn *c = &conns[ci];
    if (c->state == C_DEAD)
        return;
    int was_open = c->state == C_OPEN;
    c->state = C_DEAD;
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    free(c->frag);
    c->frag = NULL;
    if (phase < PH_WARMUP || !was_open)
        die("connection %d (user %s, %s) lost: %s%s", ci, users[c->user].name,
            target_names[c->target], why,
            was_open ? ""
                     : " (refused at accept? check the server's server.max_connections_per_addr, "
                       "server.max_connections and its ulimit -n)");
    ctr.disconnects++;
    static int shown;
    if (shown++ < 3)
        note("connection %d lost: %s", ci, why);
    if (c->writer >= 0) {
        inflight_total -= writers[c->writer].inflight;
        writers[c->writer].inflight = 0;
    }
    if (c->chan >= 0 && chans[c->chan].entered > 0)
        chans[c->chan].entered--;
}

static int handshake_read(int ci)
{
    struct wconn *c = &conns[ci];
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > 16384)
            die("connection %d: handshake answer too long", ci);
        return 0;
    }
    size_t hlen = (size_t)end.pos + 4;
    char *head = (char *)evbuffer_pullup(in, (ev_ssize_t)hlen);
    int status = 0;
    if (sscanf(head, "HTTP/1.1 %d", &status) != 1 || status != 101) {
        size_t avail = evbuffer_get_length(in);
        const char *all = (const char *)evbuffer_pullup(in, -1);
        die("WebSocket handshake of connection %d (%s) refused: %.*s", ci, target_names[c->target],
            (int)(avail > 400 ? 400 : avail), all);
    }
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char buf[64], want[32];
    unsigned char dig[SHA_DIGEST_LENGTH];
    int kl = snprintf(buf, sizeof buf, "%s%s", c->key, WS_GUID);
    SHA1((unsigned char *)buf, (size_t)kl, dig);
    EVP_EncodeBlock((unsigned char *)want, dig, SHA_DIGEST_LENGTH);
    int ok = 0;
    for (const char *line = head; line && line < head + hlen;) {
        const char *eol = memmem(line, (size_t)(head + hlen - line), "\r\n", 2);
        if (!eol)
            break;
        static const char h[] = "sec-websocket-accept:";
        if ((size_t)(eol - line) > sizeof h - 1 && strncasecmp(line, h, sizeof h - 1) == 0) {
            const char *v = line + sizeof h - 1;
            while (*v == ' ' || *v == '\t')
                v++;
            ok = (size_t)(eol - v) == strlen(want) && memcmp(v, want, strlen(want)) == 0;
        }
        line = eol + 2;
    }
    if (!ok)
        die("connection %d: bad Sec-WebSocket-Accept", ci);
    evbuffer_drain(in, hlen);
    c->state = C_OPEN;
    conns_open++;
    conns_pending--;
    if (phase == PH_CONNECT) {
        if (conns_open == nconns)
            phase_next();
        else
            while (conns_pending < O.connect_window && conns_started < nconns) {
                conns_pending++;
                conn_start(conns_started++);
            }
    }
    return 1;
}

/* 0: keep going; -1: drop the connection. */
static int frame(int ci, int fin, int op, const unsigned char *p, size_t len)
{
    struct wconn *c = &conns[ci];
    switch (op) {
    case 0x1:
    case 0x0:
        if (op == 0x1 && fin && !c->frag) {
            on_text(ci, (const char *)p, len);
            return 0;
        }
        if (op == 0x1 && c->frag)
            return -1;
        if (op == 0x0 && !c->frag)
            return -1;
        {
            char *nb = realloc(c->frag, c->frag_len + len + 1);
            if (!nb)
                die("out of memory");
            c->frag = nb;
            memcpy(c->frag + c->frag_len, p, len);
            c->frag_len += len;
        }
        if (fin) {
            on_text(ci, c->frag, c->frag_len);
            free(c->frag);
            c->frag = NULL;
            c->frag_len = 0;
        }
        return 0;
    case 0x2:
        return 0;
    case 0x8: {
        int code = len >= 2 ? (p[0] << 8 | p[1]) : 1005;
        char key[8];
        int kl = snprintf(key, sizeof key, "%d", code);
        conv_tally_add(&close_codes, key, (size_t)kl);
        if (phase < PH_WARMUP)
            die("connection %d closed by the server with %d %.*s", ci, code,
                (int)(len > 2 ? len - 2 : 0), len > 2 ? (const char *)p + 2 : "");
        static int shown;
        if (shown++ < 3)
            note("connection %d closed by the server with %d", ci, code);
        return -1;
    }
    case 0x9:
        ctr.pings++;
        ws_send(c, 0xA, p, len);
        return 0;
    default:
        return 0;
    }
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    int ci = (int)(intptr_t)arg;
    struct wconn *c = &conns[ci];
    struct evbuffer *in = bufferevent_get_input(bev);
    work_cbs++;
    if (c->state == C_HANDSHAKE && !handshake_read(ci))
        return;
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 2)
            return;
        unsigned char h[10];
        evbuffer_copyout(in, h, avail < 10 ? avail : 10);
        if (h[1] & 0x80) {
            conn_drop(ci, "masked frame from the server");
            return;
        }
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                return;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hl = 10;
        }
        if (len > MAX_FRAME) {
            conn_drop(ci, "frame too long");
            return;
        }
        if (avail < hl + len)
            return;
        unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)(hl + len));
        int rc = frame(ci, h[0] & 0x80, h[0] & 0x0f, p + hl, (size_t)len);
        if (c->state == C_DEAD)
            return;
        if (rc < 0) {
            conn_drop(ci, "closed by the server");
            return;
        }
        evbuffer_drain(in, hl + len);
    }
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    int ci = (int)(intptr_t)arg;
    struct wconn *c = &conns[ci];
    if (what & BEV_EVENT_CONNECTED) {
        struct user *u = &users[c->user];
        tls_note(bev);
        unsigned char raw[16];
        for (int i = 0; i < 16; i += 8) {
            uint64_t r = rng_next(&rng_state);
            memcpy(raw + i, &r, 8);
        }
        EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
        c->state = C_HANDSHAKE;
        evbuffer_add_printf(bufferevent_get_output(c->bev),
                            "GET " WS_PATH "?access_token=%s HTTP/1.1\r\nHost: %s\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                            u->token, target_names[c->target], c->key);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        char why[128];
        if (what & BEV_EVENT_ERROR)
            snprintf(why, sizeof why, "%s", bev_error(bev));
        else
            snprintf(why, sizeof why, "end of stream");
        conn_drop(ci, why);
    }
}

static void conn_start(int ci)
{
    struct wconn *c = &conns[ci];
    c->state = C_CONNECTING;
    c->bev = tcp_connect(ci % nsources, c->target, (void *)(intptr_t)ci, conn_read, conn_event);
}

/* ---- HTTP: register and log in ------------------------------------------- */

struct hconn {
    struct bufferevent *bev;
    int user, step, target;
};
static struct hconn *hconns;
static int nhconns, http_next, http_done;

static void http_send(struct hconn *h)
{
    struct user *u = &users[h->user];
    char body[128];
    int bl =
        snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}", u->name);
    evbuffer_add_printf(bufferevent_get_output(h->bev),
                        "POST /api/v1/auth/%s HTTP/1.1\r\nHost: %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                        h->step ? "login" : "register", target_names[h->target], bl, body);
}

static void http_take(struct hconn *h)
{
    if (http_next >= nusers) {
        bufferevent_free(h->bev);
        h->bev = NULL;
        return;
    }
    h->user = http_next++;
    h->step = 0;
    http_send(h);
}

static void http_answer(struct hconn *h, int status, const char *body, size_t blen)
{
    struct user *u = &users[h->user];
    if (status != (h->step ? 200 : 201))
        die("%s of %s: HTTP %d %.*s", h->step ? "login" : "register", u->name, status,
            (int)(blen > 300 ? 300 : blen), body);
    json_error_t err;
    json_t *j = json_loadb(body, blen, 0, &err);
    if (!j)
        die("unreadable HTTP answer: %.*s", (int)(blen > 300 ? 300 : blen), body);
    if (h->step == 0) {
        const char *code = json_string_value(json_object_get(j, "inviteCode"));
        if (!code || strlen(code) >= sizeof u->invite)
            die("register answer without inviteCode");
        strcpy(u->invite, code);
        u->id = (long long)json_integer_value(json_object_get(j, "userId"));
        json_decref(j);
        h->step = 1;
        http_send(h);
        return;
    }
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok)
        die("login answer without token");
    u->token = strdup(tok);
    json_decref(j);
    http_done++;
    if (http_done == nusers) {
        for (int i = 0; i < nhconns; i++)
            if (hconns[i].bev) {
                bufferevent_free(hconns[i].bev);
                hconns[i].bev = NULL;
            }
        phase_next();
        return;
    }
    http_take(h);
}

static void http_read(struct bufferevent *bev, void *arg)
{
    struct hconn *h = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    work_cbs++;
    while (h->bev) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return;
        size_t hlen = (size_t)end.pos + 4;
        char *head = (char *)evbuffer_pullup(in, (ev_ssize_t)hlen);
        int status = 0;
        if (sscanf(head, "HTTP/1.1 %d", &status) != 1)
            die("bad HTTP answer: %.*s", (int)(hlen > 200 ? 200 : hlen), head);
        size_t clen = 0;
        for (const char *line = head; line < head + hlen;) {
            const char *eol = memmem(line, (size_t)(head + hlen - line), "\r\n", 2);
            if (!eol)
                break;
            if (eol - line > 15 && strncasecmp(line, "content-length:", 15) == 0)
                clen = (size_t)strtoul(line + 15, NULL, 10);
            line = eol + 2;
        }
        if (evbuffer_get_length(in) < hlen + clen)
            return;
        char *all = (char *)evbuffer_pullup(in, (ev_ssize_t)(hlen + clen));
        char *body = xcalloc(1, clen + 1);
        memcpy(body, all + hlen, clen);
        evbuffer_drain(in, hlen + clen);
        http_answer(h, status, body, clen);
        free(body);
        if (phase != PH_HTTP)
            return;
    }
}

static void http_event(struct bufferevent *bev, short what, void *arg)
{
    struct hconn *h = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        die("HTTP connection to %s lost: %s", target_names[h->target],
            (what & BEV_EVENT_ERROR) ? bev_error(bev) : "end of stream");
}

static void http_begin(void)
{
    nhconns = O.http_conns < nusers ? O.http_conns : nusers;
    hconns = xcalloc((size_t)nhconns, sizeof *hconns);
    for (int i = 0; i < nhconns; i++) {
        hconns[i].target = i % ntargets;
        hconns[i].bev = tcp_connect(-1, hconns[i].target, &hconns[i], http_read, http_event);
        http_take(&hconns[i]);
    }
}

/* ---- timers -------------------------------------------------------------- */

static struct event *ev_phase, *ev_tick, *ev_storm, *ev_progress, *ev_setup_deadline;
static uint64_t rate_sent, rate_cursor;

static void rate_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (!running || nwriters == 0)
        return;
    uint64_t now = now_ns();
    /* write k is due at run_t0 + k / rate: those due by now number
     * floor(elapsed * rate) + 1 */
    uint64_t due = (uint64_t)((double)(now - run_t0) * O.rate / 1e9) + 1;
    int budget = 100000;
    while (rate_sent < due && budget-- > 0) {
        int found = -1;
        for (int k = 0; k < nwriters; k++) {
            int w = (int)(rate_cursor++ % (uint64_t)nwriters);
            if (writers[w].inflight < (uint32_t)O.max_inflight &&
                conns[writers[w].conn].state == C_OPEN) {
                found = w;
                break;
            }
        }
        if (found < 0)
            break; /* every writer has max_inflight unanswered: the backlog waits */
        /* the intended send time, so a late send counts against latency */
        uint64_t intended = run_t0 + (uint64_t)((double)rate_sent * 1e9 / O.rate);
        writer_send(found, intended);
        rate_sent++;
        work_cbs++;
    }
}

static void storm_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (running && conv_storm_tick(now_ns()) > 0)
        work_cbs++;
    if (!running || conv_storm_over())
        event_del(ev_storm);
}

static void progress(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    switch (phase) {
    case PH_HTTP:
        note("login: %d/%d users", http_done, nusers);
        break;
    case PH_CONNECT:
        note("connect: %d/%d WebSockets open", conns_open, nconns);
        break;
    case PH_PROBE:
    case PH_FRIENDS:
    case PH_CREATE:
    case PH_JOIN:
    case PH_ENTER:
        note("%s: %d/%d", phase_names[phase], op_done, nops);
        break;
    default:
        break;
    }
}

static void setup_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    die("setup did not finish within %.0f s (--setup-timeout)", O.setup_timeout);
}

/* The typing storm owes nothing countable, so its drain lasts until the
 * server is done: nothing arrived for 1 s and the server (with --server-pid)
 * used under 5 % of a core meanwhile. A server still working through a
 * backlog may queue for seconds without writing; that keeps the drain going
 * (up to --drain). */
static int typing_quiet(void)
{
    static uint64_t t0;
    static struct proc_sample s0;
    uint64_t now = now_ns(), last = conv_last_rx();
    if (!t0 || last > t0) {
        t0 = last > phase_t0 ? last : phase_t0;
        s0 = server_sample();
        return 0;
    }
    double secs = (double)(now - t0) / 1e9;
    if (secs < 1.0)
        return 0;
    struct proc_sample s1 = server_sample();
    if (s0.ok && s1.ok && s1.cpu_s - s0.cpu_s > 0.05 * secs) {
        t0 = now;
        s0 = s1;
        return 0;
    }
    return 1;
}

static void phase_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (phase == PH_DRAIN) {
        int done = inflight_total == 0 && ctr.delivered >= ctr.expected;
        if (O.scenario == SC_TYPING)
            done = typing_quiet();
        if (!done && (double)(now_ns() - phase_t0) / 1e9 < O.drain) {
            struct timeval tv = tv_of(0.01);
            event_add(ev_phase, &tv);
            return;
        }
    }
    phase_next();
}

static void phase_after(double secs)
{
    struct timeval tv = tv_of(secs);
    event_add(ev_phase, &tv);
}

static void writers_start(void)
{
    running = 1;
    run_t0 = now_ns();
    conv_set_active(1);
    if (O.scenario == SC_TYPING) {
        struct timeval tv = tv_of(0.001);
        conv_storm_begin(O.typing_rate, O.duration, run_t0);
        event_add(ev_storm, &tv);
    } else if (O.rate > 0) {
        struct timeval tv = tv_of(0.001);
        event_add(ev_tick, &tv);
    } else {
        for (int w = 0; w < nwriters; w++)
            for (int k = 0; k < O.window; k++)
                writer_send(w, now_ns());
    }
}

static void measure_start(void)
{
    load_hist_reset(&h_ack);
    load_hist_reset(&h_deliv);
    measuring = 1;
    ctr_meas0 = ctr;
    cv_meas0 = *conv_counts();
    meas_t0 = now_ns();
    srv_meas0 = server_sample();
    self_cpu0 = self_cpu();
    idle_s0 = idle_s;
}

static void phase_next(void)
{
    uint64_t now = now_ns();
    if (phase != PH_INIT)
        phase_secs[phase] = (double)(now - phase_t0) / 1e9;
    phase++;
    phase_t0 = now;
    switch (phase) {
    case PH_HTTP:
        srv_start = server_sample();
        http_begin();
        break;
    case PH_CONNECT:
        srv_before_ws = server_sample();
        while (conns_pending < O.connect_window && conns_started < nconns) {
            conns_pending++;
            conn_start(conns_started++);
        }
        break;
    case PH_PROBE: {
        srv_connected = server_sample();
        if (O.scenario != SC_IDLE) {
            ops_begin(0);
            break;
        }
        free(ops);
        ops = xcalloc((size_t)nconns, sizeof *ops);
        for (int i = 0; i < nconns; i++)
            ops[i] = (struct op){.a = i, .kind = OPK_PROBE};
        ops_begin(nconns);
        break;
    }
    case PH_FRIENDS:
        free(ops);
        ops = xcalloc((size_t)nedges, sizeof *ops);
        for (int i = 0; i < nedges; i++)
            ops[i] = (struct op){.a = edges[i].a, .b = edges[i].b, .kind = OPK_FRIEND};
        ops_begin(nedges);
        break;
    case PH_CREATE:
        free(ops);
        ops = xcalloc((size_t)nchans, sizeof *ops);
        for (int i = 0; i < nchans; i++)
            ops[i] = (struct op){.a = i, .kind = OPK_CREATE};
        ops_begin(nchans);
        break;
    case PH_JOIN:
        free(ops);
        ops = xcalloc((size_t)njoins, sizeof *ops);
        for (int i = 0; i < njoins; i++)
            ops[i] = (struct op){.a = joins[i].user, .b = joins[i].chan, .kind = OPK_JOIN};
        ops_begin(njoins);
        break;
    case PH_ENTER: {
        free(ops);
        ops = xcalloc((size_t)nconns, sizeof *ops);
        int n = 0;
        for (int i = 0; i < nconns; i++)
            if (conns[i].chan >= 0)
                ops[n++] = (struct op){.a = i, .kind = OPK_ENTER};
        ops_begin(n);
        break;
    }
    case PH_SETTLE:
        event_del(ev_setup_deadline);
        event_del(ev_progress);
        for (int w = 0; w < nwriters; w++)
            writer_build(w);
        if (O.chatter || O.scenario == SC_TYPING)
            for (int i = 0; i < nconns; i++)
                if (conns[i].chan >= 0)
                    conv_member(i, chans[conns[i].chan].id);
        note("setup done in %.1f s; settling %.1f s", (double)(now - prog_t0) / 1e9, O.settle);
        phase_after(O.settle);
        break;
    case PH_WARMUP:
        srv_ready = server_sample();
        if (O.warmup > 0) {
            writers_start();
            phase_after(O.warmup);
            break;
        }
        phase_next();
        break;
    case PH_RUN:
        measure_start();
        if (!running)
            writers_start();
        note("running %.1f s", O.duration);
        phase_after(O.duration);
        break;
    case PH_DRAIN:
        running = 0;
        conv_set_active(0);
        ctr_meas1 = ctr;
        cv_meas1 = *conv_counts();
        meas_t1 = now_ns();
        srv_meas1 = server_sample();
        self_cpu1 = self_cpu();
        idle_s1 = idle_s;
        phase_after(0.01);
        break;
    case PH_REST:
        if (O.rest > 0) {
            note("holding the connections %.1f s", O.rest);
            phase_after(O.rest);
            break;
        }
        phase_next();
        break;
    case PH_END:
        measuring = 0;
        srv_end = server_sample();
        finish();
        event_base_loopbreak(base);
        break;
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what, (void)arg;
    if (phase == PH_RUN || phase == PH_WARMUP) {
        note("signal %d: ending the run early", (int)sig);
        event_del(ev_phase);
        if (phase == PH_WARMUP)
            phase_next();
        phase_next();
        return;
    }
    die("interrupted by signal %d", (int)sig);
}

/* ---- layouts ------------------------------------------------------------- */

static void add_edge(int a, int b)
{
    edges[nedges].a = a;
    edges[nedges].b = b;
    nedges++;
}

/* channel members[0..n) with user indices; friends of members[0] up to
 * create_max go into the CREATE, the rest join with the channel's code */
static void add_chan(int *members, int n, int direct)
{
    struct chan *ch = &chans[nchans];
    ch->members = members;
    ch->n = n;
    ch->direct = direct;
    ch->ncreate = direct ? 2 : (n < O.create_max + 1 ? n : O.create_max + 1);
    for (int i = 1; i < ch->ncreate; i++)
        add_edge(members[0], members[i]);
    for (int i = ch->ncreate; i < n; i++) {
        joins[njoins].user = members[i];
        joins[njoins].chan = nchans;
        njoins++;
    }
    for (int i = 0; i < n; i++)
        conns[users[members[i]].conn].chan = nchans;
    nchans++;
}

static void add_writer(int ci)
{
    conns[ci].writer = nwriters;
    writers[nwriters++].conn = ci;
}

static void layout(void)
{
    int sc = O.scenario;
    if (sc == SC_IDLE) {
        nconns = O.connections;
        nusers = O.users > 0 ? O.users : (nconns < 100 ? nconns : 100);
        if (nusers > nconns)
            nusers = nconns;
    } else if (sc == SC_DIRECT) {
        int pairs = O.pairs > 0 ? O.pairs : O.connections / 2;
        if (pairs < 1)
            die("direct needs --pairs (or --connections) of at least 1 pair");
        nconns = nusers = 2 * pairs;
    } else if (sc == SC_FANOUT || sc == SC_TYPING) {
        nconns = nusers = O.members > 0 ? O.members : O.connections;
        if (nconns < 2)
            die("%s needs --members of at least 2", scenario_names[sc]);
    } else {
        nconns = nusers = O.connections;
        if (nconns < 2)
            die("mixed needs --connections of at least 2");
    }
    if (nconns < 1)
        die("--connections must be at least 1");
    if (nconns > CONN_CAP)
        die("%d connections asked; the cap is %d", nconns, CONN_CAP);

    users = xcalloc((size_t)nusers, sizeof *users);
    conns = xcalloc((size_t)nconns, sizeof *conns);
    chans = xcalloc((size_t)nconns, sizeof *chans);
    writers = xcalloc((size_t)nconns, sizeof *writers);
    edges = xcalloc((size_t)nconns, sizeof *edges);
    joins = xcalloc((size_t)nconns, sizeof *joins);
    for (int u = 0; u < nusers; u++) {
        snprintf(users[u].name, sizeof users[u].name, "ld%s_%d", run_tag, u);
        users[u].conn = -1;
    }
    for (int i = 0; i < nconns; i++) {
        conns[i].user = i % nusers;
        conns[i].chan = conns[i].writer = -1;
        conns[i].target = (uint8_t)(i % ntargets);
        if (users[conns[i].user].conn < 0)
            users[conns[i].user].conn = i;
    }

    if (sc == SC_DIRECT) {
        for (int p = 0; p < nconns / 2; p++) {
            int *m = xcalloc(2, sizeof *m);
            m[0] = 2 * p;
            m[1] = 2 * p + 1;
            add_chan(m, 2, 1);
            add_writer(2 * p);
            if (!O.one_way)
                add_writer(2 * p + 1);
        }
    } else if (sc == SC_FANOUT || sc == SC_TYPING) {
        int *m = xcalloc((size_t)nconns, sizeof *m);
        for (int i = 0; i < nconns; i++)
            m[i] = i;
        add_chan(m, nconns, 0);
        int w = sc == SC_TYPING ? 0 : O.writers > 0 ? O.writers : 1;
        if (w > nconns)
            w = nconns;
        for (int i = 0; i < w; i++)
            add_writer(i);
    } else if (sc == SC_MIXED) {
        /* Zipf over sizes: P(size) ~ 1 / (size - min + 1)^s */
        int lo = O.min_size, hi = O.max_size, span = hi - lo + 1;
        double *cdf = xcalloc((size_t)span, sizeof *cdf), acc = 0;
        for (int k = 0; k < span; k++)
            cdf[k] = acc += 1.0 / pow(k + 1, O.zipf);
        int next = 0;
        while (nconns - next >= 2) {
            double u = rng_unit(&rng_layout) * acc;
            int k = 0;
            while (k < span - 1 && cdf[k] < u)
                k++;
            int size = lo + k, left = nconns - next;
            if (size > left)
                size = left;
            if (left - size == 1)
                size = size < hi ? size + 1 : size - 1; /* leave nobody alone */
            if (size < 2)
                size = left;
            int *m = xcalloc((size_t)size, sizeof *m);
            for (int i = 0; i < size; i++)
                m[i] = next + i;
            add_chan(m, size, 0);
            next += size;
        }
        free(cdf);
        int w = (int)lround(O.writer_share * nconns);
        if (w < 1)
            w = 1;
        int *perm = xcalloc((size_t)nconns, sizeof *perm);
        for (int i = 0; i < nconns; i++)
            perm[i] = i;
        for (int i = 0; i < w; i++) {
            int j = i + (int)(rng_next(&rng_layout) % (uint64_t)(nconns - i));
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
            if (conns[perm[i]].chan >= 0)
                add_writer(perm[i]);
        }
        free(perm);
    }
}

/* ---- report -------------------------------------------------------------- */

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static json_t *hist_json(const struct load_hist *h)
{
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)h->total, "p50_ms",
                     ms(load_hist_quantile(h, 0.5)), "p90_ms", ms(load_hist_quantile(h, 0.9)),
                     "p99_ms", ms(load_hist_quantile(h, 0.99)), "p999_ms",
                     ms(load_hist_quantile(h, 0.999)), "max_ms", ms(h->max), "mean_ms",
                     load_hist_mean(h) / 1e6);
}

static void row(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void row(const char *name, const char *fmt, ...)
{
    va_list ap;
    printf("  %-30s ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void lat_row(const char *name, const struct load_hist *h)
{
    if (!h->total) {
        row(name, "%10s", "-");
        return;
    }
    row(name, "%10.2f %8.2f %8.2f %8.2f %8.2f %9" PRIu64, ms(load_hist_quantile(h, 0.5)),
        ms(load_hist_quantile(h, 0.99)), ms(load_hist_quantile(h, 0.999)), ms(h->max),
        load_hist_mean(h) / 1e6, h->total);
}

/* "KEY n, KEY n" of a tally, or nothing when it is empty */
static void tally_row(const char *name, const struct conv_tally *t)
{
    if (!t->n)
        return;
    char buf[512];
    size_t at = 0;
    for (int i = 0; i < t->n && at < sizeof buf; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s %" PRIu64, i ? ", " : "", t->key[i],
                               t->count[i]);
    if (t->other && at < sizeof buf)
        snprintf(buf + at, sizeof buf - at, ", others %" PRIu64, t->other);
    row(name, "%10s", buf);
}

static json_t *tally_json(const struct conv_tally *t)
{
    json_t *o = json_object();
    for (int i = 0; i < t->n; i++)
        json_object_set_new(o, t->key[i], json_integer((json_int_t)t->count[i]));
    if (t->other)
        json_object_set_new(o, "others", json_integer((json_int_t)t->other));
    return o;
}

/* The conversation counters over the measured seconds (--chatter). */
static void chatter_rows(double secs)
{
    const struct conv_counts *a = &cv_meas0, *b = &cv_meas1;
    row("chatter sent: typing/read/react", "%10" PRIu64 " %10" PRIu64 " %10" PRIu64,
        b->typing_sent - a->typing_sent, b->read_acks_sent - a->read_acks_sent,
        b->reacts_sent - a->reacts_sent);
    struct {
        const char *name;
        uint64_t n;
    } got[] = {{"NOTIFY_TYPING received", b->notify_typing - a->notify_typing},
               {"NOTIFY_READ received", b->notify_read - a->notify_read},
               {"NOTIFY_REACTION received", b->notify_reaction - a->notify_reaction},
               {"REACT_RESPONSE received", b->react_responses - a->react_responses}};
    for (size_t i = 0; i < sizeof got / sizeof got[0]; i++)
        row(got[i].name, "%10" PRIu64 " %10.0f/s", got[i].n, got[i].n / secs);
    row("errors: chatter requests", "%10" PRIu64, conv_counts()->errors);
}

static json_t *conv_json(const struct conv_counts *c)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "typing_sent",
                     (json_int_t)c->typing_sent, "read_acks_sent", (json_int_t)c->read_acks_sent,
                     "reacts_sent", (json_int_t)c->reacts_sent, "notify_typing",
                     (json_int_t)c->notify_typing, "notify_read", (json_int_t)c->notify_read,
                     "notify_reaction", (json_int_t)c->notify_reaction, "react_responses",
                     (json_int_t)c->react_responses, "errors", (json_int_t)c->errors);
}

/* "chatter": what the members sent and received, measured and whole run */
static json_t *chatter_json(double secs)
{
    struct conv_counts d = cv_meas1;
    d.typing_sent -= cv_meas0.typing_sent;
    d.read_acks_sent -= cv_meas0.read_acks_sent;
    d.reacts_sent -= cv_meas0.reacts_sent;
    d.notify_typing -= cv_meas0.notify_typing;
    d.notify_read -= cv_meas0.notify_read;
    d.notify_reaction -= cv_meas0.notify_reaction;
    d.react_responses -= cv_meas0.react_responses;
    d.errors -= cv_meas0.errors;
    json_t *m = conv_json(&d);
    json_object_set_new(m, "notify_typing_per_s", json_real(d.notify_typing / secs));
    json_object_set_new(m, "notify_read_per_s", json_real(d.notify_read / secs));
    json_object_set_new(m, "notify_reaction_per_s", json_real(d.notify_reaction / secs));
    return json_pack("{s:o, s:o, s:i, s:i}", "measured", m, "totals", conv_json(conv_counts()),
                     "read_every", CONV_READ_EVERY, "react_every", CONV_REACT_EVERY);
}

/* The typing storm: what was sent, and NOTIFY_TYPING per receiving socket. */
static void typing_rows(double secs)
{
    const struct conv_counts *c = conv_counts();
    struct conv_spread sp = conv_typing_spread();
    row("TYPING sent", "%10" PRIu64 " %10.0f/s (over %.2f s, at most %" PRIu64 " each)",
        c->typing_sent, c->typing_sent / secs, conv_storm_span(), conv_storm_per_member());
    row("NOTIFY_TYPING received", "%10" PRIu64 " %10.0f/s", c->notify_typing,
        c->notify_typing / secs);
    row("NOTIFY_TYPING per socket", "%10" PRIu64 " to %" PRIu64 " (mean %.1f over %d sockets)",
        sp.min, sp.max, sp.sockets ? (double)sp.sum / sp.sockets : 0.0, sp.sockets);
    row("errors: TYPING refused", "%10" PRIu64, c->errors);
}

static json_t *typing_json(void)
{
    const struct conv_counts *c = conv_counts();
    struct conv_spread sp = conv_typing_spread();
    return json_pack("{s:f, s:I, s:I, s:f, s:I, s:I, s:{s:i, s:I, s:I, s:f}}", "rate_per_member",
                     O.typing_rate, "per_member_max", (json_int_t)conv_storm_per_member(), "sent",
                     (json_int_t)c->typing_sent, "span_s", conv_storm_span(), "received",
                     (json_int_t)c->notify_typing, "errors", (json_int_t)c->errors, "per_socket",
                     "sockets", sp.sockets, "min", (json_int_t)sp.min, "max", (json_int_t)sp.max,
                     "mean", sp.sockets ? (double)sp.sum / sp.sockets : 0.0);
}

/* What the conversation and the storm add to the JSON: errors and closes by
 * code, the server's last sample, "chatter" and "typing". */
static void json_more(json_t *j, double secs)
{
    json_t *totals = json_object_get(j, "totals"), *server = json_object_get(j, "server");
    json_object_set_new(totals, "errors_by_code", tally_json(&err_codes));
    json_object_set_new(totals, "server_closes", tally_json(&close_codes));
    if (server) {
        json_object_set_new(server, "rss_kib_final", json_integer(srv_end.rss_kib));
        json_object_set_new(server, "rss_kib_peak_final", json_integer(srv_end.hwm_kib));
    }
    if (O.chatter)
        json_object_set_new(j, "chatter", chatter_json(secs));
    if (O.scenario == SC_TYPING)
        json_object_set_new(j, "typing", typing_json());
}

static void finish(void)
{
    int sc = O.scenario;
    double secs = (double)(meas_t1 - meas_t0) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    struct counters w = ctr_meas1, t = ctr;
    uint64_t sent = w.sent - ctr_meas0.sent, acked = w.acked - ctr_meas0.acked,
             deliv = w.delivered - ctr_meas0.delivered;
    double srv_cpu = srv_meas1.ok && srv_meas0.ok ? (srv_meas1.cpu_s - srv_meas0.cpu_s) / secs : -1;
    double gen_cpu = (self_cpu1 - self_cpu0) / secs;
    double gen_work = gen_cpu - (idle_s1 - idle_s0) / secs;
    const char *name = O.cluster ? "cluster" : scenario_names[sc];

    printf("chatd-load %s%s%s: %d connections (%d users, %d sources) to %d target%s, "
           "%d channels, %d writers\n",
           name, O.cluster ? "/" : "", O.cluster ? scenario_names[sc] : "", nconns, nusers,
           nsources, ntargets, ntargets == 1 ? "" : "s", nchans, nwriters);
    if (sc == SC_TYPING)
        printf("measured %.2f s; every member sends TYPING %g times a second\n", secs,
               O.typing_rate);
    else if (sc != SC_IDLE)
        printf("measured %.2f s after %.1f s warm-up; %d-byte contents; %s%s\n", secs, O.warmup,
               O.size, O.rate > 0 ? "open loop" : "closed loop",
               O.chatter ? "; members chatter" : "");
    printf("  %-30s %10s\n", "metric", "value");
    row("setup: logins", "%10d in %.2f s (%.0f users/s)", nusers, phase_secs[PH_HTTP],
        nusers / (phase_secs[PH_HTTP] > 0 ? phase_secs[PH_HTTP] : 1e-9));
    row("setup: WebSockets opened", "%10d in %.2f s (%.0f/s)", nconns, phase_secs[PH_CONNECT],
        nconns / (phase_secs[PH_CONNECT] > 0 ? phase_secs[PH_CONNECT] : 1e-9));
    if (O.tls) /* every WebSocket above is a TCP connect, a TLS handshake and an upgrade */
        row("setup: TLS", "%10s", tls_seen);
    double connect_cpu = srv_connected.cpu_s - srv_before_ws.cpu_s;
    if (srv_before_ws.ok && srv_connected.ok && connect_cpu > 0)
        row("setup: server CPU per WebSocket", "%10.3f ms (%.0f opened per CPU-second)",
            connect_cpu * 1e3 / nconns, nconns / connect_cpu);
    if (sc != SC_IDLE)
        row("setup: friends/channels/enter", "%10.2f s (%d friendships, %d joins)",
            phase_secs[PH_FRIENDS] + phase_secs[PH_CREATE] + phase_secs[PH_JOIN] +
                phase_secs[PH_ENTER],
            nedges, njoins);
    if (sc == SC_IDLE) {
        row("connections held", "%10d for %.1f s", nconns - (int)t.disconnects, secs);
        if (srv_before_ws.ok && srv_ready.ok) {
            row("server RSS before WebSockets", "%10ld KiB", srv_before_ws.rss_kib);
            row("server RSS with WebSockets", "%10ld KiB", srv_ready.rss_kib);
            row("server RSS at the end", "%10ld KiB (peak %ld KiB)", srv_meas1.rss_kib,
                srv_meas1.hwm_kib);
            row("RSS growth per connection", "%10.2f KiB",
                (double)(srv_ready.rss_kib - srv_before_ws.rss_kib) / nconns);
        }
        row("pings answered", "%10" PRIu64, t.pings);
    } else if (sc == SC_TYPING) {
        typing_rows(secs);
    } else {
        row("messages sent", "%10" PRIu64 " %10.0f/s", sent, sent / secs);
        row("messages acked (durable)", "%10" PRIu64 " %10.0f/s", acked, acked / secs);
        row("deliveries", "%10" PRIu64 " %10.0f/s", deliv, deliv / secs);
        /* counted from the first write (warm-up and drain included): a
         * delivery can arrive before its write's ack, which is when it is
         * expected, so only whole-run counts must match exactly */
        row("whole run: sent/acked", "%10" PRIu64 " %10" PRIu64, t.sent, t.acked);
        row("whole run: delivered/expected", "%10" PRIu64 " %10" PRIu64, t.delivered, t.expected);
        printf("  %-30s %10s %8s %8s %8s %8s %9s\n", "latency (ms)", "p50", "p99", "p99.9", "max",
               "mean", "count");
        lat_row("ack (write -> durable ack)", &h_ack);
        lat_row("delivery (write -> notify)", &h_deliv);
        if (O.chatter)
            chatter_rows(secs);
    }
    row("errors: write/rate-limited", "%10" PRIu64 " %10" PRIu64, t.write_errors, t.rate_limited);
    row("errors: other/disconnects", "%10" PRIu64 " %10" PRIu64, t.other_errors, t.disconnects);
    tally_row("errors by code", &err_codes);
    tally_row("closed by the server (code)", &close_codes);
    if (srv_cpu >= 0) {
        if (O.npids > 1)
            printf("  (server figures are sums over %d processes)\n", O.npids);
        row("server CPU", "%10.2f cores", srv_cpu);
        if (sc != SC_IDLE)
            row("server RSS start/ready/end", "%10ld %ld %ld KiB", srv_start.rss_kib,
                srv_ready.rss_kib, srv_end.rss_kib);
        if (sc == SC_TYPING)
            row("server RSS peak (VmHWM)", "%10ld KiB", srv_end.hwm_kib);
    }
    if (sc != SC_IDLE && sc != SC_TYPING && t.acked == 0) {
        fprintf(stderr, "chatd-load: no write was acknowledged\n");
        exit_code = 3;
    }
    if (sc == SC_TYPING && conv_counts()->notify_typing == 0) {
        fprintf(stderr, "chatd-load: no NOTIFY_TYPING arrived\n");
        exit_code = 3;
    }
    if (O.busy_poll)
        row("generator CPU", "%10.2f cores, %.2f of them working (busy-polling)%s", gen_cpu,
            gen_work,
            gen_work > 0.85 ? "  (near one core: the generator may be the bottleneck)" : "");
    else
        row("generator CPU", "%10.2f cores%s", gen_cpu,
            gen_cpu > 0.85 ? "  (near one core: the generator may be the bottleneck)" : "");
    fflush(stdout);

    if (!O.json)
        return;
    json_t *tg = json_array();
    for (int i = 0; i < ntargets; i++)
        json_array_append_new(tg, json_string(target_names[i]));
    json_t *j =
        json_pack("{s:s, s:s, s:o, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:i, s:i}",
                  "scenario", name, "pattern", scenario_names[sc], "targets", tg, "connections",
                  nconns, "users", nusers, "sources", nsources, "channels", nchans, "writers",
                  nwriters, "friendships", nedges, "joins", njoins, "duration_s", secs, "warmup_s",
                  O.warmup, "rate_target", O.rate, "window", O.window, "content_bytes", O.size);
    json_object_set_new(j, "tls", O.tls ? json_string(tls_seen) : json_null());
    json_object_set_new(j, "setup_s",
                        json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "login",
                                  phase_secs[PH_HTTP], "connect", phase_secs[PH_CONNECT], "probe",
                                  phase_secs[PH_PROBE], "friends", phase_secs[PH_FRIENDS], "create",
                                  phase_secs[PH_CREATE], "join", phase_secs[PH_JOIN], "enter",
                                  phase_secs[PH_ENTER]));
    json_object_set_new(j, "measured",
                        json_pack("{s:I, s:I, s:I, s:f, s:f, s:f}", "sent", (json_int_t)sent,
                                  "acked", (json_int_t)acked, "delivered", (json_int_t)deliv,
                                  "sent_per_s", sent / secs, "acks_per_s", acked / secs,
                                  "deliveries_per_s", deliv / secs));
    json_object_set_new(
        j, "totals",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "sent", (json_int_t)t.sent,
                  "acked", (json_int_t)t.acked, "delivered", (json_int_t)t.delivered,
                  "expected_deliveries", (json_int_t)t.expected, "write_errors",
                  (json_int_t)t.write_errors, "rate_limited", (json_int_t)t.rate_limited,
                  "other_errors", (json_int_t)t.other_errors, "disconnects",
                  (json_int_t)t.disconnects, "pings", (json_int_t)t.pings));
    json_object_set_new(
        j, "latency",
        json_pack("{s:o, s:o}", "ack", hist_json(&h_ack), "delivery", hist_json(&h_deliv)));
    if (O.npids) {
        json_t *pids = json_array();
        for (int i = 0; i < O.npids; i++)
            json_array_append_new(pids, json_integer(O.pids[i]));
        json_object_set_new(j, "server",
                            json_pack("{s:o, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "pids", pids,
                                      "rss_kib_start", (json_int_t)srv_start.rss_kib,
                                      "rss_kib_before_ws", (json_int_t)srv_before_ws.rss_kib,
                                      "rss_kib_ready", (json_int_t)srv_ready.rss_kib, "rss_kib_end",
                                      (json_int_t)srv_meas1.rss_kib, "rss_kib_peak",
                                      (json_int_t)srv_meas1.hwm_kib, "cpu_s",
                                      srv_meas1.cpu_s - srv_meas0.cpu_s, "cpu_cores", srv_cpu));
        json_object_set_new(json_object_get(j, "server"), "cpu_s_connect",
                            json_real(srv_connected.cpu_s - srv_before_ws.cpu_s));
        if (sc == SC_IDLE)
            json_object_set_new(
                json_object_get(j, "server"), "rss_kib_per_connection",
                json_real((double)(srv_ready.rss_kib - srv_before_ws.rss_kib) / nconns));
    }
    json_more(j, secs);
    json_object_set_new(j, "generator",
                        json_pack("{s:f, s:f, s:b}", "cpu_cores", gen_cpu, "working_cores",
                                  O.busy_poll ? gen_work : gen_cpu, "busy_poll", O.busy_poll));
    if (json_dump_file(j, O.json, JSON_INDENT(2) | JSON_REAL_PRECISION(7)) != 0)
        fprintf(stderr, "chatd-load: cannot write %s\n", O.json);
    json_decref(j);
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: chatd-load --scenario idle|direct|fanout|mixed|typing|cluster [options]\n"
        "\n"
        "  --target HOST:PORT     chatd to load (repeat for several nodes; 127.0.0.0/8 only)\n"
        "  --duration S           seconds of measured load (idle: seconds held) [10]\n"
        "  --warmup S             seconds of load before measuring [0]\n"
        "  --drain S              seconds to wait for the last acks and deliveries [5]\n"
        "  --rest S               seconds to hold the connections after the drain, before\n"
        "                         the last server sample [0]\n"
        "  --settle S             seconds between setup and load [1]\n"
        "  --connections N        idle, mixed: WebSockets; direct: 2 x pairs; fanout: members\n"
        "  --users U              idle: users the connections are spread over [min(N,100)]\n"
        "  --pairs P              direct: pairs of users, each in a direct channel\n"
        "  --one-way              direct: only the first of each pair writes\n"
        "  --members M            fanout, typing: members of the channel, one WebSocket each\n"
        "  --writers W            fanout: members that write [1]\n"
        "  --chatter              fanout: the members also type, ack what they read and react\n"
        "  --typing-rate R        typing: TYPING per second each member sends [20]\n"
        "  --writer-share F       mixed: share of connections that write [0.05]\n"
        "  --min-size/--max-size  mixed: channel sizes, Zipf-distributed [2, 50]\n"
        "  --zipf S               mixed: Zipf exponent of the sizes [1.0]\n"
        "  --pattern direct|fanout  cluster: the layout spread over the targets [fanout]\n"
        "  --rate R               total writes per second (open loop); 0: closed loop [0]\n"
        "  --window W             closed loop: writes in flight per writer [4]\n"
        "  --max-inflight N       open loop: unanswered writes per writer at most [1000]\n"
        "  --size B               bytes of each message's content (>= 20) [64]\n"
        "  --sources K            source addresses (from --source-base on); 0: one per 20000 [0]\n"
        "  --source-base ADDR     first source address [127.0.0.2]\n"
        "  --connect-window N     WebSocket handshakes in flight [256]\n"
        "  --setup-window N       setup requests in flight [256]\n"
        "  --http-conns N         keep-alive HTTP connections for logins [8]\n"
        "  --create-max N         members put in a CREATE; the rest JOIN by code [100]\n"
        "  --server-pid PID       server process for RSS and CPU (repeat for several)\n"
        "  --setup-timeout S      give up when setup takes longer [300]\n"
        "  --json FILE            write the results as JSON\n"
        "  --seed N               layout seed [1]\n"
        "  --quiet                no progress on stderr\n"
        "  --busy-poll            poll without sleeping (for a generator on its own core)\n"
        "  --tls                  https and wss (TLS 1.2 and later; the certificate is not\n"
        "                         verified): the handshakes are part of each connection\n");
}

static int in_loopback(struct in_addr a)
{
    return (ntohl(a.s_addr) >> 24) == 127;
}

static void add_target(const char *spec)
{
    if (ntargets >= MAX_TARGETS)
        die("at most %d targets", MAX_TARGETS);
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host)
        die("--target %s: expected HOST:PORT", spec);
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    struct sockaddr_in *t = &targets[ntargets];
    memset(t, 0, sizeof *t);
    t->sin_family = AF_INET;
    long port = strtol(colon + 1, NULL, 10);
    if (inet_pton(AF_INET, host, &t->sin_addr) != 1 || port < 1 || port > 65535)
        die("--target %s: expected a numeric IPv4 address and a port", spec);
    if (!in_loopback(t->sin_addr))
        die("--target %s: only loopback addresses (127.0.0.0/8) are allowed", spec);
    t->sin_port = htons((uint16_t)port);
    snprintf(target_names[ntargets], sizeof target_names[ntargets], "%s:%ld", host, port);
    ntargets++;
}

static double num(const char *opt, const char *v, double lo, double hi)
{
    char *end;
    double d = strtod(v, &end);
    if (*v == 0 || *end != 0 || !(d >= lo && d <= hi))
        die("%s %s: expected a number from %g to %g", opt, v, lo, hi);
    return d;
}

static void parse_args(int argc, char **argv)
{
    enum {
        o_scenario = 256,
        o_target,
        o_duration,
        o_warmup,
        o_drain,
        o_settle,
        o_connections,
        o_users,
        o_pairs,
        o_one_way,
        o_members,
        o_writers,
        o_writer_share,
        o_min_size,
        o_max_size,
        o_zipf,
        o_pattern,
        o_rate,
        o_window,
        o_max_inflight,
        o_size,
        o_sources,
        o_source_base,
        o_connect_window,
        o_setup_window,
        o_http_conns,
        o_create_max,
        o_server_pid,
        o_setup_timeout,
        o_json,
        o_seed,
        o_quiet,
        o_busy_poll,
        o_chatter,
        o_typing_rate,
        o_rest,
        o_tls,
        o_help
    };
    static const struct option lo[] = {{"scenario", 1, 0, o_scenario},
                                       {"target", 1, 0, o_target},
                                       {"duration", 1, 0, o_duration},
                                       {"warmup", 1, 0, o_warmup},
                                       {"drain", 1, 0, o_drain},
                                       {"settle", 1, 0, o_settle},
                                       {"connections", 1, 0, o_connections},
                                       {"users", 1, 0, o_users},
                                       {"pairs", 1, 0, o_pairs},
                                       {"one-way", 0, 0, o_one_way},
                                       {"members", 1, 0, o_members},
                                       {"writers", 1, 0, o_writers},
                                       {"writer-share", 1, 0, o_writer_share},
                                       {"min-size", 1, 0, o_min_size},
                                       {"max-size", 1, 0, o_max_size},
                                       {"zipf", 1, 0, o_zipf},
                                       {"pattern", 1, 0, o_pattern},
                                       {"rate", 1, 0, o_rate},
                                       {"window", 1, 0, o_window},
                                       {"max-inflight", 1, 0, o_max_inflight},
                                       {"size", 1, 0, o_size},
                                       {"sources", 1, 0, o_sources},
                                       {"source-base", 1, 0, o_source_base},
                                       {"connect-window", 1, 0, o_connect_window},
                                       {"setup-window", 1, 0, o_setup_window},
                                       {"http-conns", 1, 0, o_http_conns},
                                       {"create-max", 1, 0, o_create_max},
                                       {"server-pid", 1, 0, o_server_pid},
                                       {"setup-timeout", 1, 0, o_setup_timeout},
                                       {"json", 1, 0, o_json},
                                       {"seed", 1, 0, o_seed},
                                       {"quiet", 0, 0, o_quiet},
                                       {"busy-poll", 0, 0, o_busy_poll},
                                       {"chatter", 0, 0, o_chatter},
                                       {"typing-rate", 1, 0, o_typing_rate},
                                       {"rest", 1, 0, o_rest},
                                       {"tls", 0, 0, o_tls},
                                       {"help", 0, 0, o_help},
                                       {0, 0, 0, 0}};
    const char *scen = NULL, *pattern = "fanout";
    O.duration = 10;
    O.drain = 5;
    O.settle = 1;
    O.setup_timeout = 300;
    O.writer_share = 0.05;
    O.zipf = 1.0;
    O.min_size = 2;
    O.max_size = 50;
    O.window = 4;
    O.max_inflight = 1000;
    O.size = 64;
    O.connect_window = 256;
    O.setup_window = 256;
    O.http_conns = 8;
    O.create_max = 100;
    O.seed = 1;
    O.connections = -1;
    O.typing_rate = 20;
    inet_pton(AF_INET, "127.0.0.2", &O.source_base);
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case o_scenario:
            scen = optarg;
            break;
        case o_target:
            add_target(optarg);
            break;
        case o_duration:
            O.duration = num("--duration", optarg, 0.1, DURATION_CAP);
            break;
        case o_warmup:
            O.warmup = num("--warmup", optarg, 0, DURATION_CAP);
            break;
        case o_drain:
            O.drain = num("--drain", optarg, 0, 600);
            break;
        case o_settle:
            O.settle = num("--settle", optarg, 0, 600);
            break;
        case o_connections:
            O.connections = (int)num("--connections", optarg, 1, CONN_CAP);
            break;
        case o_users:
            O.users = (int)num("--users", optarg, 1, CONN_CAP);
            break;
        case o_pairs:
            O.pairs = (int)num("--pairs", optarg, 1, CONN_CAP / 2);
            break;
        case o_one_way:
            O.one_way = 1;
            break;
        case o_members:
            O.members = (int)num("--members", optarg, 2, CONN_CAP);
            break;
        case o_writers:
            O.writers = (int)num("--writers", optarg, 1, CONN_CAP);
            break;
        case o_writer_share:
            O.writer_share = num("--writer-share", optarg, 0, 1);
            break;
        case o_min_size:
            O.min_size = (int)num("--min-size", optarg, 2, 100000);
            break;
        case o_max_size:
            O.max_size = (int)num("--max-size", optarg, 2, 100000);
            break;
        case o_zipf:
            O.zipf = num("--zipf", optarg, 0, 10);
            break;
        case o_pattern:
            pattern = optarg;
            break;
        case o_rate:
            O.rate = num("--rate", optarg, 0, 1e8);
            break;
        case o_window:
            O.window = (int)num("--window", optarg, 1, 100000);
            break;
        case o_max_inflight:
            O.max_inflight = (int)num("--max-inflight", optarg, 1, 1e7);
            break;
        case o_size:
            O.size = (int)num("--size", optarg, TS_DIGITS + 1, 60000);
            break;
        case o_sources:
            O.sources = (int)num("--sources", optarg, 0, 65536);
            break;
        case o_source_base:
            if (inet_pton(AF_INET, optarg, &O.source_base) != 1 || !in_loopback(O.source_base))
                die("--source-base %s: expected an address in 127.0.0.0/8", optarg);
            break;
        case o_connect_window:
            O.connect_window = (int)num("--connect-window", optarg, 1, 1e6);
            break;
        case o_setup_window:
            O.setup_window = (int)num("--setup-window", optarg, 1, 1e6);
            break;
        case o_http_conns:
            O.http_conns = (int)num("--http-conns", optarg, 1, 1024);
            break;
        case o_create_max:
            O.create_max = (int)num("--create-max", optarg, 1, 100000);
            break;
        case o_server_pid:
            if (O.npids >= MAX_PIDS)
                die("at most %d --server-pid", MAX_PIDS);
            O.pids[O.npids++] = (int)num("--server-pid", optarg, 1, INT_MAX);
            break;
        case o_setup_timeout:
            O.setup_timeout = num("--setup-timeout", optarg, 1, 86400);
            break;
        case o_json:
            O.json = optarg;
            break;
        case o_seed:
            O.seed = (unsigned long long)num("--seed", optarg, 0, 1e18);
            break;
        case o_quiet:
            O.quiet = 1;
            break;
        case o_busy_poll:
            O.busy_poll = 1;
            break;
        case o_chatter:
            O.chatter = 1;
            break;
        case o_typing_rate:
            O.typing_rate = num("--typing-rate", optarg, 0.01, 10000);
            break;
        case o_rest:
            O.rest = num("--rest", optarg, 0, 600);
            break;
        case o_tls:
            O.tls = 1;
            break;
        case o_help:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument %s", argv[optind]);
    if (!scen) {
        usage(stderr);
        exit(2);
    }
    int found = 0;
    for (int i = 0; i < N_SCENARIOS; i++)
        if (strcmp(scen, scenario_names[i]) == 0) {
            O.scenario = i;
            found = 1;
        }
    if (strcmp(scen, "cluster") == 0) {
        O.cluster = 1;
        found = 1;
        if (strcmp(pattern, "direct") == 0)
            O.scenario = SC_DIRECT;
        else if (strcmp(pattern, "fanout") == 0)
            O.scenario = SC_FANOUT;
        else
            die("--pattern %s: expected direct or fanout", pattern);
    }
    if (!found)
        die("--scenario %s: expected idle, direct, fanout, mixed, typing or cluster", scen);
    if (O.chatter && O.scenario != SC_FANOUT)
        die("--chatter goes with the fanout scenario (or cluster --pattern fanout)");
    if (O.scenario == SC_TYPING && (O.warmup > 0 || O.rate > 0))
        die("typing: no --warmup or --rate (the storm runs --duration at --typing-rate)");
    if (O.min_size > O.max_size)
        die("--min-size is above --max-size");
    if (ntargets == 0)
        add_target("127.0.0.1:8080");
    if (O.cluster && ntargets < 2)
        note("cluster with one --target: every connection goes to the same node");
    if (O.connections < 0)
        O.connections = O.scenario == SC_IDLE ? 1000 : O.scenario == SC_MIXED ? 500 : 0;
    if (O.scenario == SC_DIRECT && O.pairs == 0 && O.connections == 0)
        O.pairs = 16;
    if ((O.scenario == SC_FANOUT || O.scenario == SC_TYPING) && O.members == 0 &&
        O.connections == 0)
        O.members = 100;
}

int main(int argc, char **argv)
{
    prog_t0 = now_ns();
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);

    unsigned char seed[16];
    if (RAND_bytes(seed, sizeof seed) != 1)
        die("no randomness");
    memcpy(&rng_state, seed, 8);
    rng_state |= 1;
    snprintf(run_tag, sizeof run_tag, "%02x%02x%02x", seed[8], seed[9], seed[10]);
    rng_layout = O.seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    if (!rng_layout)
        rng_layout = 1;

    layout();
    conv_init(nconns, O.seed, conv_send);
    if (O.tls)
        tls_ctx = tls_client_ctx();
    nsources = O.sources > 0 ? O.sources : (nconns + 19999) / 20000;
    if (ntohl(O.source_base.s_addr) + (uint32_t)nsources - 1 > 0x7fffffffu)
        die("--sources %d from --source-base leaves 127.0.0.0/8", nsources);

    /* every WebSocket, the HTTP connections and a margin need a descriptor */
    struct rlimit rl;
    rlim_t need = (rlim_t)nconns + (rlim_t)O.http_conns + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < need)
            die("%d connections need %llu file descriptors; the limit is %llu (ulimit -n)", nconns,
                (unsigned long long)need, (unsigned long long)rl.rlim_cur);
    }

    /* a hard stop, whatever happens */
    alarm((unsigned)(O.setup_timeout + O.settle + O.warmup + O.duration + O.drain + O.rest + 30));

    if (load_hist_init(&h_ack) < 0 || load_hist_init(&h_deliv) < 0)
        die("out of memory");
    /* The rate timer's ticks are 1 ms apart: libevent's default clock may be
     * the coarse one (a few ms per step), which would send writes late. */
    struct event_config *ecfg = event_config_new();
    if (ecfg)
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    base = ecfg ? event_base_new_with_config(ecfg) : NULL;
    event_config_free(ecfg);
    if (!base)
        die("no event base");
    ev_phase = evtimer_new(base, phase_timer, NULL);
    ev_tick = event_new(base, -1, EV_PERSIST, rate_tick, NULL);
    ev_storm = event_new(base, -1, EV_PERSIST, storm_tick, NULL);
    ev_progress = event_new(base, -1, EV_PERSIST, progress, NULL);
    ev_setup_deadline = evtimer_new(base, setup_deadline, NULL);
    struct event *ev_int = evsignal_new(base, SIGINT, on_signal, NULL);
    struct event *ev_term = evsignal_new(base, SIGTERM, on_signal, NULL);
    event_add(ev_int, NULL);
    event_add(ev_term, NULL);
    struct timeval tv = tv_of(1.0);
    event_add(ev_progress, &tv);
    tv = tv_of(O.setup_timeout);
    event_add(ev_setup_deadline, &tv);

    note("%s: %d connections, %d users, %d channels, %d writers, %d targets, %d sources",
         O.cluster ? "cluster" : scenario_names[O.scenario], nconns, nusers, nchans, nwriters,
         ntargets, nsources);
    phase_next();
    if (O.busy_poll) {
        /* Never sleep in epoll_wait: a sleeping receiver makes every write of
         * the server on loopback pay a cross-CPU wake-up, which a client on
         * another machine never costs it. */
        while (phase != PH_END) {
            uint64_t before = work_cbs;
            double t0 = now_ns() / 1e9;
            if (running && O.rate > 0)
                rate_tick(-1, 0, NULL); /* writes leave when due, not at the next 1 ms tick */
            event_base_loop(base, EVLOOP_NONBLOCK);
            if (work_cbs == before)
                idle_s += now_ns() / 1e9 - t0;
        }
    } else {
        event_base_dispatch(base);
    }

    for (int i = 0; i < nconns; i++)
        if (conns[i].bev)
            bufferevent_free(conns[i].bev);
    SSL_CTX_free(tls_ctx);
    return phase == PH_END ? exit_code : 1;
}
