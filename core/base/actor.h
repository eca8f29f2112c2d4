/*
 * The user on whose behalf the loop thread works right now: set by the
 * dispatchers around a request's handler and by the store around a job's
 * done(), read by the store when a job is submitted, so that a job carries
 * its user without the plugin naming one. 0: nobody (a timer, an event, a
 * request before login). Loop thread only.
 */
#ifndef CHATD_ACTOR_H
#define CHATD_ACTOR_H

#include <stdint.h>

/* The current user, or 0. */
int64_t actor_user(void);
/* Make user_id the current user; returns the one before, to be set back. */
int64_t actor_set(int64_t user_id);

#endif
