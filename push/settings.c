#include "settings.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "config_check.h"
#include "push_settings.h"

/* The integers chatd-push reads, all declared (and range-checked) in
 * push_settings_decl. */
static const struct {
    const char *key;
    size_t offset;
} ints[] = {
#define I(key)                                                                                     \
    {                                                                                              \
#key, offsetof(struct pconf, key)                                                          \
    }
    I(timeout_ms),          I(max_in_flight),     I(max_attempts), I(backoff_ms),
    I(backoff_max_ms),      I(claim_after_ms),    I(block_ms),     I(command_timeout_ms),
    I(shutdown_timeout_ms), I(stats_interval_ms), I(max_length),
#undef I
};

#define N_INTS (sizeof ints / sizeof ints[0])

/* What chatd-push reads of the entry, in the order --help lists it. */
static const char *const read_here[] = {"url",
                                        "secret",
                                        "ca_file",
                                        "stream",
                                        "group",
                                        "consumer",
                                        "dead_stream",
                                        "delete_delivered",
                                        "timeout_ms",
                                        "max_in_flight",
                                        "max_attempts",
                                        "backoff_ms",
                                        "backoff_max_ms",
                                        "claim_after_ms",
                                        "block_ms",
                                        "command_timeout_ms",
                                        "shutdown_timeout_ms",
                                        "stats_interval_ms",
                                        "max_length",
                                        NULL};

struct ctx {
    const struct settings *s;
    const char *file;
    char *err;
    size_t errlen;
};

/* "file:line" of plugins.push.<key>, else of the entry, else the file. */
static const char *at(const struct ctx *x, const char *key)
{
    char path[128];
    snprintf(path, sizeof path, "plugins.push.%s", key);
    const char *w = json_string_value(json_object_get(x->s->plugin_where, path));
    if (!w)
        w = json_string_value(json_object_get(x->s->plugin_where, "plugins.push"));
    return w ? w : x->file;
}

static int fail(const struct ctx *x, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(const struct ctx *x, const char *key, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    config_errf(x->err, x->errlen, "%s: setting 'plugins.push.%s': %s", at(x, key), key, why);
    return -1;
}

static json_t *push_entry(const struct settings *s)
{
    for (size_t i = 0; i < json_array_size(s->plugins); i++) {
        json_t *p = json_array_get(s->plugins, i);
        const char *name = json_string_value(json_object_get(p, "name"));
        if (name && strcmp(name, "push") == 0)
            return p;
    }
    return NULL;
}

static const char *str(const json_t *conf, const char *key)
{
    return json_string_value(json_object_get(conf, key));
}

/* A name Redis keys or the group go by: given, not empty, not too long. */
static int name_ok(const struct ctx *x, const char *key, const char *v, size_t max)
{
    if (v && !*v)
        return fail(x, key, "must not be empty");
    if (v && strlen(v) > max)
        return fail(x, key, "longer than %zu bytes", max);
    return 0;
}

static int read_names(const struct ctx *x, const json_t *conf, struct pconf *out)
{
    const char *consumer = str(conf, "consumer"), *dead = str(conf, "dead_stream");
    out->stream = str(conf, "stream");
    out->group = str(conf, "group");
    if (name_ok(x, "stream", out->stream, 200) < 0 || name_ok(x, "group", out->group, 200) < 0 ||
        name_ok(x, "consumer", consumer, sizeof out->consumer - 1) < 0 ||
        name_ok(x, "dead_stream", dead, sizeof out->dead_stream - 1) < 0)
        return -1;
    if (consumer) {
        snprintf(out->consumer, sizeof out->consumer, "%s", consumer);
    } else {
        char host[64] = "";
        if (gethostname(host, sizeof host - 1) < 0 || !host[0])
            snprintf(host, sizeof host, "localhost");
        snprintf(out->consumer, sizeof out->consumer, "%s-%ld", host, (long)getpid());
    }
    snprintf(out->dead_stream, sizeof out->dead_stream, "%s%s", dead ? dead : out->stream,
             dead ? "" : ":dead");
    if (strcmp(out->dead_stream, out->stream) == 0)
        return fail(x, "dead_stream", "\"%s\" is the stream itself; dead letters need their own",
                    out->dead_stream);
    return 0;
}

static int read_delivery(const struct ctx *x, const json_t *conf, struct pconf *out)
{
    const char *backend = str(conf, "backend");
    if (!backend || strcmp(backend, "redis") != 0)
        return fail(x, "backend",
                    "\"%s\": the chat nodes write no stream for chatd-push unless it is \"redis\"",
                    backend ? backend : "");
    out->url = str(conf, "url");
    out->secret = str(conf, "secret");
    out->ca_file = str(conf, "ca_file");
    if (out->ca_file && !*out->ca_file)
        out->ca_file = NULL;
    if (!out->url)
        return fail(x, "url", "needed by chatd-push: where notifications are POSTed");
    if (strncmp(out->url, "http://", 7) && strncmp(out->url, "https://", 8))
        return fail(x, "url", "must start with http:// or https://");
    out->delete_delivered = json_is_true(json_object_get(conf, "delete_delivered"));
    return 0;
}

static int read_ints(const struct ctx *x, const json_t *conf, struct pconf *out)
{
    for (size_t i = 0; i < N_INTS; i++)
        *(int64_t *)((char *)out + ints[i].offset) =
            json_integer_value(json_object_get(conf, ints[i].key));
    if (out->backoff_max_ms < out->backoff_ms)
        return fail(x, "backoff_max_ms", "%lld is less than backoff_ms (%lld)",
                    (long long)out->backoff_max_ms, (long long)out->backoff_ms);
    if (out->block_ms > out->claim_after_ms / 2)
        return fail(x, "block_ms",
                    "%lld is more than half of claim_after_ms (%lld): a claim due waits for the "
                    "read under way",
                    (long long)out->block_ms, (long long)out->claim_after_ms);
    return 0;
}

int pconf_read(struct settings *s, const char *file, struct pconf *out, char *err, size_t errlen)
{
    struct ctx x = {s, file ? file : "(defaults)", err, errlen};
    memset(out, 0, sizeof *out);
    if ((!s->redis_host || !s->redis_host[0]) && !(s->redis_sentinels && s->redis_sentinels[0])) {
        config_errf(err, errlen,
                    "%s: setting 'redis.host': needed (or redis.sentinels): the Redis the chat "
                    "nodes share",
                    x.file);
        return -1;
    }
    out->core = s;
    out->redis_host = s->redis_host;
    out->redis_port = s->redis_port;
    out->reconnect_max_ms = s->redis_reconnect_max_ms;
    json_t *conf = push_entry(s);
    if (!conf) {
        config_errf(err, errlen, "%s: setting 'plugins': no entry named \"push\"", x.file);
        return -1;
    }
    /* the same checks as chatd's, which fill in the defaults */
    if (config_check_plugin(s->plugin_where, conf, push_settings_decl, err, errlen) < 0)
        return -1;
    if (read_delivery(&x, conf, out) < 0 || read_names(&x, conf, out) < 0)
        return -1;
    return read_ints(&x, conf, out);
}

void pconf_print(FILE *f)
{
    for (const char *const *k = read_here; *k; k++)
        for (const chatd_setting *d = push_settings_decl; d->name; d++) {
            if (strcmp(d->name, *k) != 0)
                continue;
            char def[64];
            if (d->type == CHATD_SETTING_INT)
                snprintf(def, sizeof def, "%lld", (long long)d->def_int);
            else if (d->type == CHATD_SETTING_BOOL)
                snprintf(def, sizeof def, "%s", d->def_int ? "true" : "false");
            else if (d->def_str)
                snprintf(def, sizeof def, "\"%s\"", d->def_str);
            else
                snprintf(def, sizeof def, "-");
            fprintf(f, "  plugins.push.%-20s %-12s %s\n", d->name, def, d->doc ? d->doc : "");
        }
}

void pconf_url_for_log(const char *url, char *out, size_t len)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    const char *path = host + strcspn(host, "/?#");
    const char *at_sign = memchr(host, '@', (size_t)(path - host));
    if (at_sign)
        host = at_sign + 1;
    size_t head = scheme_end ? (size_t)(scheme_end + 3 - url) : 0;
    snprintf(out, len, "%.*s%.*s%.*s", (int)head, url, (int)(path - host), host,
             (int)strcspn(path, "?#"), path);
}
