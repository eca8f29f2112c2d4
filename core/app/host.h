/* The host table handed to every plugin (chatd/plugin.h). Loop thread. */
#ifndef CHATD_HOST_H
#define CHATD_HOST_H

#include "chatd/plugin.h"

/* The table (static, valid for the process's life); data_dir borrowed for as long. */
const chatd_host *host_table(const char *data_dir);

#endif
