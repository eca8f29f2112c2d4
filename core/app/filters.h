/* Message filters: the chain host->filter_message() runs. Loop thread. */
#ifndef CHATD_FILTERS_H
#define CHATD_FILTERS_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "chatd/plugin.h"

typedef void (*filter_done_fn)(void *arg, int status, const char *content, chatd_error_code code,
                               const char *message);

void filters_init(struct event_base *base, int64_t timeout_ms);
/* A reload's new deadline, for the chains started from now on. */
void filters_set_timeout(int64_t timeout_ms);
void filters_free(void);
/* Register a filter of owner (run after those registered before). */
int filters_add(void *owner, chatd_message_filter fn, void *state);
void filters_remove_owner(void *owner);
size_t filters_count(void);
/* Run the chain on m (copied); done once with the outcome, maybe at once. 0
 * or CHATD_ENOMEM (done not called). */
int filters_run(const chatd_message_view *m, filter_done_fn done, void *arg);

void filter_pass(chatd_filter *f);
void filter_reject(chatd_filter *f, chatd_error_code code, const char *message);
void filter_replace(chatd_filter *f, const char *content);

#endif
