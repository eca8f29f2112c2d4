/* The checks of settings that the core and the plugins share, and the
 * plugins' declared settings (ABI 1.1). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "config_check.h"

#define errf config_errf

void config_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The checks every setting goes through, the core's and the plugins'. */
int config_check_range(const char *at, const char *path, int64_t v, int64_t lo, int64_t hi,
                       char *err, size_t errlen)
{
    if (v >= lo && v <= hi)
        return 0;
    errf(err, errlen, "%s: setting '%s': %lld is out of range %lld..%lld", at, path, (long long)v,
         (long long)lo, (long long)hi);
    return CHATD_EINVAL;
}

int config_check_address(const char *at, const char *path, const char *v,
                         struct sockaddr_storage *ss, char *err, size_t errlen)
{
    socklen_t len;
    if (addr_parse(v, ss, &len) == 0)
        return 0;
    errf(err, errlen,
         "%s: setting '%s': \"%s\" is not HOST:PORT with a numeric address "
         "(127.0.0.1:8080, [::1]:8080, :8080 for every address)",
         at, path, v);
    return CHATD_EINVAL;
}

/* "a, b or c" */
static void list_choices(const char *const *choices, char *list, size_t len)
{
    list[0] = '\0';
    for (const char *const *c = choices; *c; c++)
        snprintf(list + strlen(list), len - strlen(list), "%s%s",
                 c == choices ? ""
                 : c[1]       ? ", "
                              : " or ",
                 *c);
}

int config_check_choice(const char *at, const char *path, const char *v, const char *const *choices,
                        char *err, size_t errlen)
{
    if (!choices)
        return 0;
    for (const char *const *c = choices; *c; c++)
        if (strcmp(*c, v) == 0)
            return 0;
    char list[256];
    list_choices(choices, list, sizeof list);
    errf(err, errlen, "%s: setting '%s': \"%s\" is not %s", at, path, v, list);
    return CHATD_EINVAL;
}

int config_host_port(const char *addr, char *host, size_t len, int *port)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon == addr || !colon[1])
        return CHATD_EINVAL;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (*h == '[' && n >= 2 && h[n - 1] == ']')
        h++, n -= 2;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (n == 0 || n >= len || *end || p < 1 || p > 65535)
        return CHATD_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

int config_check_addresses(const char *at, const char *path, char *const *list, char *err,
                           size_t errlen)
{
    char host[256];
    int port;
    for (size_t i = 0; list && list[i]; i++)
        if (config_host_port(list[i], host, sizeof host, &port) < 0) {
            errf(err, errlen, "%s: setting '%s': \"%s\" is not \"host:port\"", at, path, list[i]);
            return CHATD_EINVAL;
        }
    return 0;
}

static const char *where_of(const json_t *where, const char *path)
{
    const char *at = json_string_value(json_object_get(where, path));
    return at ? at : "(defaults)";
}

static const chatd_setting *plugin_setting(const chatd_setting *defs, const char *key)
{
    for (const chatd_setting *d = defs; d->name; d++)
        if (strcmp(d->name, key) == 0)
            return d;
    return NULL;
}

/* One value against its declaration. */
static int check_plugin_value(const char *at, const char *path, const chatd_setting *d,
                              const json_t *v, char *err, size_t errlen)
{
    static const char *const wanted[] = {"", "an integer", "a string", "true or false",
                                         "a list of strings"};
    int ok = d->type == CHATD_SETTING_INT      ? json_is_integer(v)
             : d->type == CHATD_SETTING_STRING ? json_is_string(v)
             : d->type == CHATD_SETTING_BOOL   ? json_is_boolean(v)
                                               : json_is_array(v);
    for (size_t i = 0; ok && d->type == CHATD_SETTING_STRINGS && i < json_array_size(v); i++)
        ok = json_is_string(json_array_get(v, i));
    if (!ok) {
        errf(err, errlen, "%s: setting '%s': expected %s", at, path,
             d->type >= 1 && d->type <= 4 ? wanted[d->type] : "a value");
        return CHATD_EINVAL;
    }
    if (d->type == CHATD_SETTING_INT)
        return config_check_range(at, path, json_integer_value(v), d->min, d->max, err, errlen);
    if (d->type == CHATD_SETTING_STRING)
        return config_check_choice(at, path, json_string_value(v), d->choices, err, errlen);
    return 0;
}

static json_t *default_of(const chatd_setting *d)
{
    switch (d->type) {
    case CHATD_SETTING_INT:
        return json_integer(d->def_int);
    case CHATD_SETTING_BOOL:
        return json_boolean(d->def_int);
    case CHATD_SETTING_STRING:
        return d->def_str ? json_string(d->def_str) : NULL;
    default:
        return NULL;
    }
}

int config_check_plugin(const json_t *where, json_t *entry, const chatd_setting *defs, char *err,
                        size_t errlen)
{
    const char *name = json_string_value(json_object_get(entry, "name"));
    const char *key;
    json_t *v;
    char path[256];
    json_object_foreach(entry, key, v)
    {
        if (strcmp(key, "name") == 0 || strcmp(key, "path") == 0 || strcmp(key, "store") == 0)
            continue;
        snprintf(path, sizeof path, "plugins.%s.%s", name, key);
        const chatd_setting *d = plugin_setting(defs, key);
        if (!d) {
            char known[512] = "";
            for (const chatd_setting *k = defs; k->name; k++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         k == defs ? "" : ", ", k->name);
            errf(err, errlen, "%s: setting '%s': unknown setting (plugin %s takes: %s)",
                 where_of(where, path), path, name, known[0] ? known : "none");
            return CHATD_EINVAL;
        }
        if (check_plugin_value(where_of(where, path), path, d, v, err, errlen) < 0)
            return CHATD_EINVAL;
    }
    for (const chatd_setting *d = defs; d->name; d++)
        if (!json_object_get(entry, d->name) && (v = default_of(d)))
            json_object_set_new(entry, d->name, v);
    return 0;
}

void config_print_plugin(const char *name, const chatd_setting *defs)
{
    for (const chatd_setting *d = defs; d->name; d++) {
        char path[128], def[64];
        snprintf(path, sizeof path, "plugins.%s.%s", name, d->name);
        if (d->type == CHATD_SETTING_INT)
            snprintf(def, sizeof def, "%lld", (long long)d->def_int);
        else if (d->type == CHATD_SETTING_BOOL)
            snprintf(def, sizeof def, "%s", d->def_int ? "true" : "false");
        else if (d->type == CHATD_SETTING_STRING && d->def_str)
            snprintf(def, sizeof def, "\"%s\"", d->def_str);
        else
            snprintf(def, sizeof def, "%s", d->type == CHATD_SETTING_STRINGS ? "[]" : "-");
        printf("  %-28s %-10s %s\n", path, def, d->doc ? d->doc : "");
    }
}
