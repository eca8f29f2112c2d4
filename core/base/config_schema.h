/* The core's table of settings, for the files of the config module. */
#ifndef CHATD_CONFIG_SCHEMA_H
#define CHATD_CONFIG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

enum kind { K_INT, K_STR, K_STRLIST };

struct schema {
    const char *path;
    enum kind kind;
    size_t offset;
    const char *def_str;
    int64_t def_int, min, max;
    const char *doc;
    const char *const *choices; /* K_STR: the values allowed (NULL-terminated), or NULL: any */
};

/* Entries of the table (config.c), by the field of struct settings they fill. */
#define S_INT(p, field, def, lo, hi, doc)                                                          \
    {                                                                                              \
        p, K_INT, offsetof(struct settings, field), NULL, def, lo, hi, doc, NULL                   \
    }
#define S_STR(p, field, def, doc)                                                                  \
    {                                                                                              \
        p, K_STR, offsetof(struct settings, field), def, 0, 0, 0, doc, NULL                        \
    }
#define S_ENUM(p, field, def, choices, doc)                                                        \
    {                                                                                              \
        p, K_STR, offsetof(struct settings, field), def, 0, 0, 0, doc, choices                     \
    }

extern const struct schema config_schema[];
extern const size_t config_schema_len;

#endif
