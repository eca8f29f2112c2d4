/*
 * The fuzz targets' shared world: see world.h. The start-up below follows
 * core/main.c step by step; keep the two in the same order.
 */
#include "world.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "config.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "store.h"

#ifndef FUZZ_SOURCE_ROOT
#error "FUZZ_SOURCE_ROOT must name the source tree (tests/fuzz/meson.build sets it)"
#endif
#ifndef FUZZ_BUILD_ROOT
#error "FUZZ_BUILD_ROOT must name the build tree (tests/fuzz/meson.build sets it)"
#endif
#ifndef FUZZ_PLUGIN_DIR
#define FUZZ_PLUGIN_DIR FUZZ_BUILD_ROOT "/tests/fuzz"
#endif

/* Bounds of one settle: loop iterations, and wall time spent waiting for jobs. */
#define SETTLE_MAX_ROUNDS 2000
#define SETTLE_MAX_MS 5000

static const char *const plugin_names[] = {"auth",  "connection", "channel", "messaging",
                                           "admin", "push",       NULL};

static struct {
    int started, what;
    char data_dir[256];
    struct settings s;
    struct event_base *base;
    char token[64];
    char invite_code[16];
    long clients; /* world_clients adopted and not yet closed */
} W;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("fuzz world: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the data directory, removed at a normal exit ---- */

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void remove_data_dir(void)
{
    if (W.data_dir[0] && !getenv("CHATD_FUZZ_KEEP"))
        nftw(W.data_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- configuration ---- */

/* "path=\"value\"" with libconfig string escapes. */
static char *quoted(const char *path, const char *value)
{
    size_t n = strlen(path) + 2 * strlen(value) + 4;
    char *o = malloc(n), *q = o;
    if (!o)
        die("out of memory");
    q += sprintf(q, "%s=\"", path);
    for (const char *v = value; *v; v++) {
        if (*v == '"' || *v == '\\')
            *q++ = '\\';
        *q++ = *v;
    }
    *q++ = '"';
    *q = '\0';
    return o;
}

static char *plain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *plain(const char *fmt, ...)
{
    va_list ap;
    char *o = NULL;
    va_start(ap, fmt);
    if (vasprintf(&o, fmt, ap) < 0)
        die("out of memory");
    va_end(ap);
    return o;
}

/* The instrumented plugin built next to the fuzzers, else the regular build's. */
static char *plugin_override(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.so", FUZZ_PLUGIN_DIR, name);
    if (access(path, R_OK) != 0)
        snprintf(path, sizeof path, "%s/plugins/%s/%s.so", FUZZ_BUILD_ROOT, name, name);
    char key[64];
    snprintf(key, sizeof key, "plugins.%s.path", name);
    return quoted(key, path);
}

static void load_config(void)
{
    char *ov[32];
    int n = 0;
    char log_file[300];
    const char *log_env = getenv("CHATD_FUZZ_LOG");
    snprintf(log_file, sizeof log_file, "%s/chatd.log", W.data_dir);
    ov[n++] = quoted("server.data_dir", W.data_dir);
    ov[n++] = quoted("server.listen", "127.0.0.1:0");
    /* The fuzzers do not run from the build tree's core/, so point at the sources. */
    ov[n++] = quoted("server.sql_dir", FUZZ_SOURCE_ROOT "/sql");
    for (int i = 0; plugin_names[i]; i++)
        ov[n++] = plugin_override(plugin_names[i]);
    /* Cheap password hashing, no login lock-out, no write throttling. */
    ov[n++] = plain("plugins.auth.argon2_t_cost=1");
    ov[n++] = plain("plugins.auth.argon2_m_cost=64");
    ov[n++] = plain("plugins.auth.login_max_failures=1000000");
    ov[n++] = plain("plugins.auth.login_max_failures_per_addr=1000000");
    ov[n++] = plain("plugins.messaging.max_writes_per_second=10000000");
    ov[n++] = plain("plugins.messaging.write_burst=10000000");
    ov[n++] = quoted("plugins.push.file", "/dev/null");
    /* Durability is not under test: no fsync per commit. Few threads. */
    ov[n++] = quoted("storage.sqlite.synchronous", "normal");
    ov[n++] = plain("storage.readers=1");
    ov[n++] = plain("storage.cpu_workers=1");
    /* Sessions made by fuzzed logins expire, so they cannot pile up for hours. */
    ov[n++] = plain("session.ttl=600");
    if (log_env && *log_env) {
        ov[n++] = quoted("log.level", log_env);
        ov[n++] = quoted("log.file", "");
    } else {
        ov[n++] = quoted("log.level", "error");
        ov[n++] = quoted("log.file", log_file);
    }
    char err[1024] = "";
    const char *conf = FUZZ_SOURCE_ROOT "/etc/chatd.conf";
    int rc = config_load(conf, (const char *const *)ov, n, &W.s, err, sizeof err);
    for (int i = 0; i < n; i++)
        free(ov[i]);
    if (rc < 0)
        die("%s", err);
}

/* ---- client connections ---- */

int world_client_open(struct world_client *c, int keep_rx)
{
    memset(c, 0, sizeof *c);
    if (bufferevent_pair_new(W.base, 0, c->pair) < 0 || !(c->rx = evbuffer_new()))
        die("cannot create a bufferevent pair");
    c->keep_rx = keep_rx;
    /* Our end must read, or the server's output never leaves its buffer. */
    bufferevent_enable(c->pair[1], EV_READ | EV_WRITE);
    if (http_accept(c->pair[0], "127.0.0.1", CONN_LISTENER_MAIN) < 0) {
        c->pair[0] = NULL; /* freed by http_accept */
        return -1;
    }
    W.clients++;
    return 0;
}

/* CHATD_FUZZ_TRACE=1: show on stderr what the server sends (to read how it
 * answered a reproducer), printable bytes as they are, others as \xNN. */
static void trace(struct evbuffer *in)
{
    static int on = -1;
    if (on < 0)
        on = getenv("CHATD_FUZZ_TRACE") && *getenv("CHATD_FUZZ_TRACE") != '0';
    size_t len = evbuffer_get_length(in);
    if (!on || !len)
        return;
    const unsigned char *b = evbuffer_pullup(in, -1);
    fputs("server> ", stderr);
    for (size_t i = 0; i < len; i++) {
        if (b[i] == '\n')
            fputs("\\n\n        ", stderr);
        else if (b[i] >= 0x20 && b[i] < 0x7f)
            fputc(b[i], stderr);
        else
            fprintf(stderr, "\\x%02x", b[i]);
    }
    fputc('\n', stderr);
}

static void pump(struct world_client *c)
{
    if (!c || !c->pair[1])
        return;
    struct evbuffer *in = bufferevent_get_input(c->pair[1]);
    trace(in);
    if (c->keep_rx)
        evbuffer_add_buffer(c->rx, in);
    else
        evbuffer_drain(in, evbuffer_get_length(in));
}

void world_client_send(struct world_client *c, const void *data, size_t len)
{
    if (len)
        bufferevent_write(c->pair[1], data, len);
}

void world_settle(struct world_client *c)
{
    int64_t start = mono_ms();
    int quiet = 0;
    for (int i = 0; i < SETTLE_MAX_ROUNDS && quiet < 2; i++) {
        int active = event_base_get_num_events(W.base, EVENT_BASE_COUNT_ACTIVE) > 0;
        if (!active && store_in_flight() > 0) {
            if (mono_ms() - start > SETTLE_MAX_MS)
                break;
            /* Block until a worker hands a result back (the periodic sweep timer
             * bounds the wait). */
            event_base_loop(W.base, EVLOOP_ONCE);
        } else {
            event_base_loop(W.base, EVLOOP_NONBLOCK);
        }
        pump(c);
        if (event_base_get_num_events(W.base, EVENT_BASE_COUNT_ACTIVE) == 0 &&
            store_in_flight() == 0)
            quiet++;
        else
            quiet = 0;
    }
}

void world_client_close(struct world_client *c)
{
    world_settle(c);
    if (c->pair[1]) {
        /* Freeing our end alone tells the server nothing (libevent 2.1 just
         * unlinks the pair): finish it first, which hands the server's end an
         * EOF, as a socket's peer closing would. */
        bufferevent_flush(c->pair[1], EV_WRITE, BEV_FINISHED);
        bufferevent_free(c->pair[1]);
        c->pair[1] = NULL;
    }
    evbuffer_free(c->rx);
    c->rx = NULL;
    if (c->pair[0]) {
        W.clients--;
        c->pair[0] = NULL; /* the server frees it */
    }
    for (int i = 0; i < 50 && conn_count() > W.clients; i++)
        world_settle(NULL);
    if (conn_count() > W.clients) {
        /* The client has gone: a connection the server keeps open anyway
         * would pile up across inputs (and across real clients). */
        fprintf(stderr, "fuzz world: %ld connection(s) open on the server, %ld client(s) left\n",
                conn_count(), W.clients);
        abort();
    }
}

/* ---- small HTTP and WebSocket clients for the start-up state ---- */

/* Parse an HTTP response in c->rx: status, and the JSON body (or NULL). */
static int http_parse(struct world_client *c, json_t **body)
{
    size_t len = evbuffer_get_length(c->rx);
    char *text = (char *)evbuffer_pullup(c->rx, -1);
    int status = 0;
    *body = NULL;
    if (!text || len < 12 || sscanf(text, "HTTP/1.1 %d", &status) != 1)
        return 0;
    char *end = memmem(text, len, "\r\n\r\n", 4);
    if (end && end + 4 < text + len)
        *body = json_loadb(end + 4, (size_t)(text + len - end - 4), 0, NULL);
    return status;
}

static int http_call(const char *method, const char *path, const char *token, const char *body,
                     json_t **out)
{
    struct world_client c;
    if (world_client_open(&c, 1) < 0)
        die("the server refused a connection");
    char head[512];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                     method, path, strlen(body), token ? "Authorization: Bearer " : "",
                     token ? token : "", token ? "\r\n" : "");
    world_client_send(&c, head, (size_t)n);
    world_client_send(&c, body, strlen(body));
    world_settle(&c);
    json_t *b;
    int status = http_parse(&c, &b);
    world_client_close(&c);
    if (out)
        *out = b;
    else
        json_decref(b);
    return status;
}

static int register_user(const char *name, char *invite, size_t len)
{
    char body[256];
    json_t *r = NULL;
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"%s\"}", name, WORLD_PASSWORD);
    int status = http_call("POST", "/api/v1/auth/register", NULL, body, &r);
    if (status == 201 && invite)
        snprintf(invite, len, "%s", json_string_value(json_object_get(r, "inviteCode")));
    json_decref(r);
    return status;
}

static int login_user(const char *name, char *token, size_t len)
{
    char body[256];
    json_t *r = NULL;
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"%s\"}", name, WORLD_PASSWORD);
    int status = http_call("POST", "/api/v1/auth/login", NULL, body, &r);
    const char *t = json_string_value(json_object_get(r, "token"));
    if (status == 200 && t)
        snprintf(token, len, "%s", t);
    else if (status == 200)
        status = 0;
    json_decref(r);
    return status;
}

static int ws_open_token(struct world_client *c, const char *token, int keep_rx)
{
    if (world_client_open(c, 1) < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws/v1/message HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                     token);
    world_client_send(c, req, (size_t)n);
    world_settle(c);
    size_t len = evbuffer_get_length(c->rx);
    const char *text = (const char *)evbuffer_pullup(c->rx, -1);
    int ok = text && len >= 12 && memcmp(text, "HTTP/1.1 101", 12) == 0;
    const char *end = ok ? memmem(text, len, "\r\n\r\n", 4) : NULL;
    /* Keep whatever frames followed the handshake answer. */
    evbuffer_drain(c->rx, end ? (size_t)(end + 4 - text) : len);
    c->keep_rx = keep_rx;
    if (!keep_rx)
        evbuffer_drain(c->rx, evbuffer_get_length(c->rx));
    return ok ? 0 : -1;
}

size_t world_ws_frame(unsigned char *out, int fin, int opcode, const void *payload, size_t len,
                      const unsigned char mask[4])
{
    const unsigned char *p = payload;
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
    for (size_t i = 0; i < len; i++)
        out[n + i] = p[i] ^ mask[i % 4];
    return n + len;
}

/* The first text frame in c->rx whose type is want (or ERROR), consumed with
 * every frame before it; NULL when there is none. */
static json_t *ws_take(struct world_client *c, const char *want)
{
    for (;;) {
        size_t len = evbuffer_get_length(c->rx);
        const unsigned char *b = evbuffer_pullup(c->rx, -1);
        if (!b || len < 2)
            return NULL;
        size_t hdr = 2;
        uint64_t plen = b[1] & 0x7f;
        if (plen == 126) {
            if (len < 4)
                return NULL;
            plen = (uint64_t)b[2] << 8 | b[3];
            hdr = 4;
        } else if (plen == 127) {
            if (len < 10)
                return NULL;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | b[2 + i];
            hdr = 10;
        }
        if (len - hdr < plen)
            return NULL;
        json_t *msg = (b[0] & 0x0f) == 1 ? json_loadb((const char *)b + hdr, plen, 0, NULL) : NULL;
        evbuffer_drain(c->rx, hdr + plen);
        const char *type = json_string_value(json_object_get(msg, "type"));
        if (type && (strcmp(type, want) == 0 || strcmp(type, "ERROR") == 0))
            return msg;
        json_decref(msg);
    }
}

/* Send one message on an open WebSocket and wait for its answer of type want. */
static json_t *ws_call(struct world_client *c, const char *text, const char *want)
{
    static const unsigned char mask[4] = {0x5a, 0x17, 0xc3, 0x88};
    size_t len = strlen(text);
    unsigned char *frame = malloc(len + 14);
    if (!frame)
        die("out of memory");
    size_t n = world_ws_frame(frame, 1, 1, text, len, mask);
    world_client_send(c, frame, n);
    free(frame);
    world_settle(c);
    json_t *r = ws_take(c, want);
    const char *type = json_string_value(json_object_get(r, "type"));
    if (!type || strcmp(type, want) != 0) {
        char *dump = r ? json_dumps(r, JSON_COMPACT) : NULL;
        die("sent %s, expected %s, got %s", text, want, dump ? dump : "nothing");
    }
    return r;
}

static void ws_expect(struct world_client *c, const char *text, const char *want)
{
    json_decref(ws_call(c, text, want));
}

/* ---- sessions ---- */

/* Whether a token still names a live session (the SQL session store answers
 * at once; anything else gets one settle to answer). */
static int alive_answer;

static void token_checked(struct session *s, int status, void *arg)
{
    (void)status, (void)arg;
    alive_answer = s != NULL;
}

static int token_alive(const char *token)
{
    alive_answer = -1;
    session_lookup(token, token_checked, NULL);
    if (alive_answer < 0)
        world_settle(NULL);
    return alive_answer == 1;
}

const char *world_token(void)
{
    if (!(W.what & WORLD_USERS))
        return NULL;
    if (W.token[0] && token_alive(W.token))
        return W.token;
    /* A fuzzed logout or unregister ended it: log in again, registering anew if needed. */
    int status = login_user(WORLD_USER, W.token, sizeof W.token);
    if (status != 200 && register_user(WORLD_USER, W.invite_code, sizeof W.invite_code) == 201)
        status = login_user(WORLD_USER, W.token, sizeof W.token);
    if (status != 200)
        die("cannot log in as %s (status %d)", WORLD_USER, status);
    return W.token;
}

int world_ws_open(struct world_client *c, int keep_rx)
{
    return ws_open_token(c, world_token(), keep_rx);
}

/* Users, a session, an accepted connection, a pending invitation, two
 * channels and a few messages: enough for most message types to get past
 * their first lookup. */
static void make_users(void)
{
    char peer_code[16], third_code[16], peer_token[64], third_token[64];
    if (register_user(WORLD_USER, W.invite_code, sizeof W.invite_code) != 201 ||
        register_user(WORLD_PEER, peer_code, sizeof peer_code) != 201 ||
        register_user(WORLD_THIRD, third_code, sizeof third_code) != 201)
        die("cannot register the users");
    if (login_user(WORLD_PEER, peer_token, sizeof peer_token) != 200 ||
        login_user(WORLD_THIRD, third_token, sizeof third_token) != 200 || !world_token())
        die("cannot log in");

    struct world_client me, peer, third;
    char msg[512];
    if (world_ws_open(&me, 1) < 0 || ws_open_token(&peer, peer_token, 1) < 0 ||
        ws_open_token(&third, third_token, 1) < 0)
        die("cannot open the WebSockets");
    snprintf(msg, sizeof msg, "{\"type\":\"INVITE_REQUEST\",\"userInviteCode\":\"%s\"}",
             W.invite_code);
    ws_expect(&peer, msg, "INVITE_RESPONSE");
    ws_expect(&third, msg, "INVITE_RESPONSE");
    ws_expect(&me, "{\"type\":\"ACCEPT_REQUEST\",\"username\":\"" WORLD_PEER "\"}",
              "ACCEPT_RESPONSE");
    ws_expect(
        &me,
        "{\"type\":\"CREATE_REQUEST\",\"title\":\"direct\",\"participantUsername\":\"" WORLD_PEER
        "\"}",
        "CREATE_RESPONSE");
    ws_expect(
        &me,
        "{\"type\":\"CREATE_REQUEST\",\"title\":\"group\",\"participantUsernames\":[\"" WORLD_PEER
        "\"]}",
        "CREATE_RESPONSE");
    ws_expect(&me, "{\"type\":\"ENTER_REQUEST\",\"channelId\":1}", "ENTER_RESPONSE");
    ws_expect(&me,
              "{\"type\":\"WRITE_MESSAGE\",\"channelId\":1,\"content\":\"hello\","
              "\"clientMessageId\":\"seed-1\"}",
              "WRITE_MESSAGE_ACK");
    ws_expect(&peer, "{\"type\":\"WRITE_MESSAGE\",\"channelId\":{\"id\":1},\"content\":\"hi\"}",
              "WRITE_MESSAGE_ACK");
    ws_expect(&peer, "{\"type\":\"WRITE_MESSAGE\",\"channelId\":2,\"content\":\"group hi\"}",
              "WRITE_MESSAGE_ACK");
    world_client_close(&third);
    world_client_close(&peer);
    world_client_close(&me);
}

/* ---- start-up, as core/main.c does it ---- */

void world_init(int what)
{
    if (W.started)
        return;
    W.started = 1;
    W.what = what;
    const char *tmp = getenv("CHATD_FUZZ_TMPDIR");
    if (!tmp || !*tmp)
        tmp = getenv("TMPDIR");
    snprintf(W.data_dir, sizeof W.data_dir, "%s/chatd-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(W.data_dir))
        die("mkdtemp %s: %s", W.data_dir, strerror(errno));
    atexit(remove_data_dir);

    load_config();
    int level = log_level_parse(W.s.log_level);
    if (level < 0)
        die("log level '%s' is not error, warn, info or debug", W.s.log_level);
    if (log_open(W.s.log_file, (chatd_log_level)level) < 0)
        die("cannot open log file %s: %s", W.s.log_file, strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    if (!(W.base = event_base_new()))
        die("cannot create the event loop");
    char err[1024] = "";
    if (app_start(W.base, &W.s, 0, err, sizeof err) < 0)
        die("%s", err);
    if (what & WORLD_USERS)
        make_users();
}
