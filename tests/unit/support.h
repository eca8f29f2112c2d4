/*
 * What the unit tests of the connection layers share: running the loop until
 * something holds (or a deadline passes), connections over bufferevent pairs
 * whose other end the test holds, and the client's side of RFC 6455 on that
 * end (masked frames out, the server's frames in).
 */
#ifndef CHATD_TEST_SUPPORT_H
#define CHATD_TEST_SUPPORT_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct conn;

/* A loop whose events other threads may activate (the store's workers). */
struct event_base *support_base(void);
/* Free a loop made by support_base, after a last turn for what is due. */
void support_base_free(struct event_base *base);

struct deadline {
    struct event *ev;
    int expired;
};

void deadline_start(struct deadline *d, struct event_base *base, int ms);
void deadline_stop(struct deadline *d);

/* Turn base's loop until cond holds or ms have passed; cond is checked
 * before every turn. The caller asserts cond afterwards. */
#define RUN_UNTIL(base, cond, ms)                                                                  \
    do {                                                                                           \
        struct deadline d_;                                                                        \
        deadline_start(&d_, (base), (ms));                                                         \
        while (!(cond) && !d_.expired)                                                             \
            event_base_loop((base), EVLOOP_ONCE);                                                  \
        deadline_stop(&d_);                                                                        \
    } while (0)

/* Turn the loop for ms, whatever happens. */
void support_run_for(struct event_base *base, int ms);
/* One turn of the loop that runs what is due and does not wait. */
void support_turn(struct event_base *base);

/* A connection taken in by the net layer (no protocol yet) over a new
 * bufferevent pair; *end is the test's side, to free with bufferevent_free. */
struct conn *support_conn(struct event_base *base, struct bufferevent **end);
/* Bytes waiting at the test's end. */
size_t support_pending(struct bufferevent *end);
/* Everything waiting at the test's end, NUL-terminated (free it). */
char *support_take_all(struct bufferevent *end, size_t *len);
/* The peer shuts its side: the connection's end reads EOF. */
void support_send_eof(struct bufferevent *end);

/* WebSocket opcodes (RFC 6455, 5.2). */
enum {
    WSC_CONT = 0x0,
    WSC_TEXT = 0x1,
    WSC_BINARY = 0x2,
    WSC_CLOSE = 0x8,
    WSC_PING = 0x9,
    WSC_PONG = 0xa,
};

/* A client frame, masked, with the shortest length encoding, into out (at
 * least len + 14 bytes); its size. */
size_t wsc_build(unsigned char *out, int fin, int opcode, const void *data, size_t len);
/* Write one client frame to the test's end. */
void wsc_send(struct bufferevent *end, int fin, int opcode, const void *data, size_t len);
/* A text message in one frame. */
void wsc_send_text(struct bufferevent *end, const char *text);
/* A close frame with a status code and reason. */
void wsc_send_close(struct bufferevent *end, uint16_t code, const char *reason);

/* A frame of the server's, as read at the test's end. */
struct wsc_frame {
    int fin, opcode, masked;
    size_t len;
    unsigned char *data; /* len bytes + NUL, unmasked */
};

/* Take one whole frame from the test's end: 1, or 0 when none is whole yet. */
int wsc_recv(struct bufferevent *end, struct wsc_frame *f);
/* The next frame, waiting for it up to ms: 1, or 0 when none came. */
int wsc_wait(struct event_base *base, struct bufferevent *end, struct wsc_frame *f, int ms);
void wsc_frame_free(struct wsc_frame *f);
/* A close frame's status code, or -1 when it has none. */
int wsc_close_code(const struct wsc_frame *f);

#endif
