/* The host table handed to every plugin (chatd/plugin.h). Loop thread. */
#ifndef CHATD_HOST_H
#define CHATD_HOST_H

#include "chatd/plugin.h"

#include <event2/event.h>

/* The table (static, valid for the process's life); data_dir and base
 * borrowed for as long. */
const chatd_host *host_table(const char *data_dir, struct event_base *base);
/* The plugins are unloaded: answers of Redis calls they made still to come
 * are dropped. */
void host_plugins_gone(void);

#endif
