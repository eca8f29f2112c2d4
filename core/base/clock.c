#include "clock.h"

#include <event2/event.h>
#include <pthread.h>
#include <sys/time.h>
#include <time.h>

static struct {
    struct event_base *base;
    pthread_t loop;
    struct timeval turn; /* libevent's time of the turn the cache belongs to */
    int64_t turn_ms;
} ck;

static int64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_init(struct event_base *base)
{
    ck.base = base;
    ck.loop = pthread_self();
    ck.turn.tv_sec = -1;
}

int64_t clock_now_ms(void)
{
    if (!ck.base || !pthread_equal(ck.loop, pthread_self()))
        return coarse_ms();
    /* libevent caches its time when a turn's callbacks start; a new value
     * means a new turn. (Outside callbacks it reads the clock each time, so
     * the cache is refreshed each time too.) */
    struct timeval tv;
    if (event_base_gettimeofday_cached(ck.base, &tv) < 0)
        return coarse_ms();
    if (tv.tv_sec != ck.turn.tv_sec || tv.tv_usec != ck.turn.tv_usec) {
        ck.turn = tv;
        ck.turn_ms = coarse_ms();
    }
    return ck.turn_ms;
}

int64_t clock_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int64_t clock_wall_s(void)
{
    return (int64_t)time(NULL);
}
