/*
 * The one clock of chatd: monotonic milliseconds as of the current loop turn
 * (for timeouts and rates), wall-clock time (for what is stored or shown),
 * and precise monotonic microseconds (for latency metrics).
 */
#ifndef CHATD_CLOCK_H
#define CHATD_CLOCK_H

#include <stdint.h>

struct event_base;

/* Cache the turn's time against base's loop (loop thread, start-up). NULL: no cache. */
void clock_init(struct event_base *base);
/* Monotonic ms (CLOCK_MONOTONIC_COARSE), read once per turn of the loop and
 * the same for every callback of that turn. Loop thread; elsewhere a fresh read. */
int64_t clock_now_ms(void);
/* Monotonic microseconds, read afresh (CLOCK_MONOTONIC). Any thread. */
int64_t clock_now_us(void);
/* Wall-clock ms and seconds since the epoch, read afresh. Any thread. */
int64_t clock_wall_ms(void);
int64_t clock_wall_s(void);

#endif
