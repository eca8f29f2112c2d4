/*
 * chatd as one application: every layer started bottom up, each handed its
 * settings and the callbacks it reports through, then the plugins, then the
 * listener; and stopped top down. Loop thread only.
 */
#ifndef CHATD_APP_H
#define CHATD_APP_H

#include <stddef.h>

struct event_base;
struct settings;

/* Start on base with s (borrowed for the process's life); listen = 0 skips
 * the listening socket (tests hand connections in with http_accept). 0, or a
 * negative code with the reason in err. Whatever started is stopped by
 * app_stop, which is due in either case. */
int app_start(struct event_base *base, const struct settings *s, int listen, char *err,
              size_t errlen);
/* Hand the layers s's settings again (a reload changed some). */
void app_configure(const struct settings *s);
/* What start-up would check beyond the settings' own validation (the TLS
 * files load, the key matches): 0, or a negative code with the reason in err.
 * For --check-config; s is borrowed. */
int app_check(const struct settings *s, char *err, size_t errlen);
/* SIGHUP: load the TLS certificate and key again for new connections (the
 * old ones stay in use when the files do not load). */
void app_reload(void);
/* SIGTERM: stop accepting, and close every connection the way its protocol does. */
void app_drain(void);
/* Whether no job is queued, no write waits for its filters and no connection
 * is open (draining is done). */
int app_idle(void);
/* Stop everything (after the loop stopped). */
void app_stop(void);

#endif
