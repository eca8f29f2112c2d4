/* Conversation traffic of chatd-load (docs/BENCHMARKS.md): the members of a
 * channel who type, acknowledge what they have read and react while the
 * writers write (--chatter), or who all type at once (--scenario typing); and
 * the counts of what they receive in return.
 *
 * Every request goes out with "requestId":"c", so an ERROR answering one is
 * told apart from those answering writes ("w...") and setup ("s..."). */
#ifndef LOAD_CONV_H
#define LOAD_CONV_H

#include <stddef.h>
#include <stdint.h>

#define CONV_READ_EVERY 10  /* a member acks what it read every this many deliveries */
#define CONV_REACT_EVERY 20 /* one reaction per this many writer messages */
#define CONV_RECENT 8       /* a reaction goes to one of the last this many messages */
#define CONV_TALLY_MAX 16

/* Sends one text frame on WebSocket ci; < 0 when it cannot. */
typedef int (*conv_send_fn)(int ci, const char *text, size_t len);

struct conv_counts {
    uint64_t typing_sent, read_acks_sent, reacts_sent;
    uint64_t notify_typing, notify_read, notify_reaction, react_responses;
    uint64_t errors; /* ERRORs answering the requests above */
};

/* Counts by a short text key (error codes, close codes). */
struct conv_tally {
    int n;
    char key[CONV_TALLY_MAX][24];
    uint64_t count[CONV_TALLY_MAX];
    uint64_t other; /* keys past CONV_TALLY_MAX */
};

/* NOTIFY_TYPING received per member socket. */
struct conv_spread {
    int sockets;
    uint64_t min, max, sum;
};

void conv_init(int nconns, uint64_t seed, conv_send_fn send);
/* WebSocket ci is a member of channel_id (entered there). */
void conv_member(int ci, long long channel_id);
/* Requests are sent only while active (the load runs). */
void conv_set_active(int on);

/* A writer sent a message: a random member types; every CONV_REACT_EVERY
 * messages a random member reacts (on, and next time off again). */
void conv_on_write(void);
/* A NOTIFY_MESSAGE reached member ci: every CONV_READ_EVERY it acks the
 * highest sequence it has received. */
void conv_on_message(int ci, const char *p, size_t n);
/* A message of another type reached ci: 1 when it is one of the
 * conversation's (NOTIFY_TYPING, NOTIFY_READ, NOTIFY_REACTION,
 * REACT_RESPONSE), counted; 0 otherwise. */
int conv_on_text(int ci, const char *type, size_t tl);
/* An ERROR to one of the requests above. */
void conv_on_error(void);

/* The typing storm: every member sends TYPING `rate` times a second (evenly
 * spread, members staggered) until `duration` seconds have passed, at most
 * ceil(rate * duration) each. */
void conv_storm_begin(double rate, double duration, uint64_t now);
/* Sends what is due by now; returns the frames sent. */
int conv_storm_tick(uint64_t now);
int conv_storm_over(void);
/* Seconds from the storm's first TYPING to its last. */
double conv_storm_span(void);
uint64_t conv_storm_per_member(void);

const struct conv_counts *conv_counts(void);
struct conv_spread conv_typing_spread(void);
/* When the last conversation message arrived, CLOCK_MONOTONIC ns (0: none). */
uint64_t conv_last_rx(void);

void conv_tally_add(struct conv_tally *t, const char *key, size_t len);

#endif
