/* Reading libconfig text for the configuration (config.c's helpers). */
#ifndef CHATD_CONFIG_TEXT_H
#define CHATD_CONFIG_TEXT_H

#include <libconfig.h>
#include <stddef.h>

/* Read a libconfig text (a file's contents, or one override) into cfg with
 * every integer literal read as 64 bits; one beyond 64 bits becomes a string
 * config_int_overflow() recognises. libconfig's result: nonzero when read. */
int config_read_text(config_t *cfg, const char *text);
/* The literal as written when s is an integer that did not fit, else NULL. */
const char *config_int_overflow(const config_setting_t *s);
/* A whole file as a new NUL-terminated string (NULL when it cannot be read,
 * or holds a NUL byte). */
char *config_slurp(const char *path);
/* Apply one "path=value" override to cfg: 0, or a negative code with the
 * reason in err. */
int config_apply_override(config_t *cfg, const char *ov, char *err, size_t errlen);

#endif
