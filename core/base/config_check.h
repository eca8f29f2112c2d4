/* Checks of one setting's value, shared by the core's settings and the
 * plugins' (config.c, config_check.c). */
#ifndef CHATD_CONFIG_CHECK_H
#define CHATD_CONFIG_CHECK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "chatd/plugin.h"

/* Format an error message into err. */
void config_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* v in lo..hi, else CHATD_EINVAL with "<at>: setting '<path>': ..." in err. */
int config_check_range(const char *at, const char *path, int64_t v, int64_t lo, int64_t hi,
                       char *err, size_t errlen);
/* v one of choices (NULL-terminated; NULL: any), else CHATD_EINVAL likewise. */
int config_check_choice(const char *at, const char *path, const char *v, const char *const *choices,
                        char *err, size_t errlen);
/* Split "host:port" (the host may be "[v6]") into host (len bytes) and port.
 * 0, or CHATD_EINVAL when it is not one. */
int config_host_port(const char *addr, char *host, size_t len, int *port);
/* Each entry of list (NULL-terminated) "host:port", else CHATD_EINVAL likewise. */
int config_check_addresses(const char *at, const char *path, char *const *list, char *err,
                           size_t errlen);

/* v a listen address ("host:port" with a numeric host, as addr_parse reads
 * it), parsed into *ss; else CHATD_EINVAL likewise. */
int config_check_address(const char *at, const char *path, const char *v,
                         struct sockaddr_storage *ss, char *err, size_t errlen);

/* Check a plugin's entry (one of the settings' plugins) against the
 * settings it declares, with the same checks: an unknown, mistyped or
 * out-of-range setting is an error naming its file, line (from where, the
 * settings' plugin_where) and path. Fills in the defaults of those not
 * given. 0 or CHATD_EINVAL with err set. */
int config_check_plugin(const json_t *where, json_t *entry, const chatd_setting *defs, char *err,
                        size_t errlen);
/* List a plugin's declared settings as --help lists the core's. */
void config_print_plugin(const char *name, const chatd_setting *defs);

#endif
