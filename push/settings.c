#include "settings.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

struct int_setting {
    const char *key;
    size_t offset;
    int64_t def, lo, hi;
    const char *doc;
};

#define I(key, def, lo, hi, doc)                                                                   \
    {                                                                                              \
#key, offsetof(struct pconf, key), def, lo, hi, doc                                        \
    }

/* docs/CONFIG.md (plugins.push) describes the same list. */
static const struct int_setting ints[] = {
    I(timeout_ms, 5000, 1, 600000, "ms one POST may take, connecting included"),
    I(max_in_flight, 64, 1, 100000, "entries a worker holds at once (POSTed or waiting to be)"),
    I(max_attempts, 10, 1, 1000, "POSTs of one entry, across workers, before the dead stream"),
    I(backoff_ms, 1000, 1, 3600000, "wait before the first retry, doubled at each attempt"),
    I(backoff_max_ms, 300000, 1, 86400000, "longest wait between two attempts"),
    I(claim_after_ms, 30000, 100, 86400000, "entries idle this long in another worker are taken"),
    I(block_ms, 2000, 1, 600000, "longest wait of one XREADGROUP for new entries"),
    I(command_timeout_ms, 5000, 100, 600000, "Redis silent this long: the connection is renewed"),
    I(shutdown_timeout_ms, 10000, 0, 3600000, "how long SIGTERM waits for the POSTs under way"),
    I(stats_interval_ms, 60000, 0, 86400000, "a line of counts in the log this often (0: at exit)"),
    I(max_length, 1000000, 1, INT64_MAX, "the dead stream is trimmed to about this many entries"),
};

#define N_INTS (sizeof ints / sizeof ints[0])

/* The keys of plugins.push that are no typo: the push plugin's, then chatd-push's. */
static const char known_keys[] =
    " name path store backend file stream max_length url secret ca_file timeout_ms"
    " max_in_flight max_attempts backoff_ms backoff_max_ms max_pending lease_ms"
    " recover_after_ms max_devices_per_user"
    " group consumer claim_after_ms dead_stream block_ms command_timeout_ms"
    " shutdown_timeout_ms stats_interval_ms delete_delivered ";

static int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static const json_t *push_entry(const struct settings *s)
{
    for (size_t i = 0; i < json_array_size(s->plugins); i++) {
        const json_t *p = json_array_get(s->plugins, i);
        const char *name = json_string_value(json_object_get(p, "name"));
        if (name && strcmp(name, "push") == 0)
            return p;
    }
    return NULL;
}

static int read_ints(const json_t *conf, struct pconf *out, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_INTS; i++) {
        const struct int_setting *is = &ints[i];
        const json_t *v = json_object_get(conf, is->key);
        int64_t n = is->def;
        if (v && !json_is_integer(v))
            return errf(err, errlen, "setting 'plugins.push.%s': expected an integer", is->key);
        if (v)
            n = json_integer_value(v);
        if (n < is->lo || n > is->hi)
            return errf(err, errlen, "setting 'plugins.push.%s': %lld is out of range %lld..%lld",
                        is->key, (long long)n, (long long)is->lo, (long long)is->hi);
        *(int64_t *)((char *)out + is->offset) = n;
    }
    if (out->block_ms > out->claim_after_ms / 2)
        return errf(err, errlen,
                    "setting 'plugins.push.block_ms': %lld is more than half of claim_after_ms "
                    "(%lld): a claim due waits for the read under way",
                    (long long)out->block_ms, (long long)out->claim_after_ms);
    if (out->backoff_max_ms < out->backoff_ms)
        return errf(err, errlen,
                    "setting 'plugins.push.backoff_max_ms': %lld is less than backoff_ms (%lld)",
                    (long long)out->backoff_max_ms, (long long)out->backoff_ms);
    return 0;
}

/* The string at key (def when absent): 0, or -1 when it is not a string,
 * or empty though it must not be, or longer than max bytes. */
static int read_str(const json_t *conf, const char *key, const char *def, int may_be_empty,
                    size_t max, const char **out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(conf, key);
    *out = def;
    if (!v)
        return 0;
    if (!json_is_string(v))
        return errf(err, errlen, "setting 'plugins.push.%s': expected a string", key);
    *out = json_string_value(v);
    if (!may_be_empty && !**out)
        return errf(err, errlen, "setting 'plugins.push.%s': must not be empty", key);
    if (strlen(*out) > max)
        return errf(err, errlen, "setting 'plugins.push.%s': longer than %zu bytes", key, max);
    return 0;
}

static int read_names(const json_t *conf, struct pconf *out, char *err, size_t errlen)
{
    const char *consumer, *dead;
    if (read_str(conf, "stream", "chatd:push", 0, 200, &out->stream, err, errlen) < 0 ||
        read_str(conf, "group", "chatd-push", 0, 200, &out->group, err, errlen) < 0 ||
        read_str(conf, "consumer", NULL, 0, sizeof out->consumer - 1, &consumer, err, errlen) < 0 ||
        read_str(conf, "dead_stream", NULL, 0, sizeof out->dead_stream - 1, &dead, err, errlen) < 0)
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
        return errf(err, errlen,
                    "setting 'plugins.push.dead_stream': \"%s\" is the stream itself; "
                    "dead letters need a stream of their own",
                    out->dead_stream);
    return 0;
}

static int read_delivery(const json_t *conf, struct pconf *out, char *err, size_t errlen)
{
    const char *backend;
    if (read_str(conf, "backend", "log", 0, 64, &backend, err, errlen) < 0 ||
        read_str(conf, "url", NULL, 0, 4096, &out->url, err, errlen) < 0 ||
        read_str(conf, "secret", NULL, 1, 4096, &out->secret, err, errlen) < 0 ||
        read_str(conf, "ca_file", NULL, 1, 4096, &out->ca_file, err, errlen) < 0)
        return -1;
    if (strcmp(backend, "redis") != 0)
        return errf(err, errlen,
                    "setting 'plugins.push.backend': \"%s\": the chat nodes write no stream "
                    "for chatd-push unless it is \"redis\"",
                    backend);
    if (!out->url)
        return errf(err, errlen, "setting 'plugins.push.url': needed: where notifications go");
    if (strncmp(out->url, "http://", 7) && strncmp(out->url, "https://", 8))
        return errf(err, errlen, "setting 'plugins.push.url': must start with http:// or https://");
    const json_t *del = json_object_get(conf, "delete_delivered");
    if (del && !json_is_boolean(del))
        return errf(err, errlen, "setting 'plugins.push.delete_delivered': expected true or false");
    out->delete_delivered = del ? json_is_true(del) : 1;
    return 0;
}

int pconf_read(const struct settings *s, struct pconf *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!s->redis_host || !s->redis_host[0])
        return errf(err, errlen, "setting 'redis.host': needed: the Redis the chat nodes share");
    out->redis_host = s->redis_host;
    out->redis_port = s->redis_port;
    out->reconnect_max_ms = s->redis_reconnect_max_ms;
    const json_t *conf = push_entry(s);
    if (!conf)
        return errf(err, errlen, "setting 'plugins': no entry named \"push\"");
    if (read_delivery(conf, out, err, errlen) < 0 || read_names(conf, out, err, errlen) < 0)
        return -1;
    return read_ints(conf, out, err, errlen);
}

static int known(const char *key)
{
    size_t n = strlen(key);
    if (!n || strchr(key, ' '))
        return 0;
    for (const char *at = strstr(known_keys, key); at; at = strstr(at + 1, key))
        if (at[-1] == ' ' && at[n] == ' ')
            return 1;
    return 0;
}

void pconf_unknown_keys(const struct settings *s, char *buf, size_t len)
{
    const json_t *conf = push_entry(s);
    const char *key;
    const json_t *v;
    buf[0] = '\0';
    json_object_foreach((json_t *)conf, key, v)
    {
        size_t used = strlen(buf);
        if (!known(key))
            snprintf(buf + used, len - used, "%s%s", used ? ", " : "", key);
    }
}

void pconf_print(FILE *f)
{
    static const char *const strs[][3] = {
        {"url", "(none)", "where notifications are POSTed (http:// or https://)"},
        {"secret", "(none)", "key of X-Chatd-Signature (HMAC-SHA256 of the body)"},
        {"ca_file", "(system)", "CA certificates for an https:// url"},
        {"stream", "\"chatd:push\"", "the stream the chat nodes XADD to"},
        {"group", "\"chatd-push\"", "consumer group the workers share"},
        {"consumer", "host-pid", "this worker's name in the group"},
        {"dead_stream", "stream:dead", "where entries go after max_attempts"},
        {"delete_delivered", "true", "XDEL an entry once delivered (else MAXLEN trims it)"},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        fprintf(f, "  plugins.push.%-20s %-12s %s\n", strs[i][0], strs[i][1], strs[i][2]);
    for (size_t i = 0; i < N_INTS; i++)
        fprintf(f, "  plugins.push.%-20s %-12lld %s\n", ints[i].key, (long long)ints[i].def,
                ints[i].doc);
}

void pconf_url_for_log(const char *url, char *out, size_t len)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    const char *path = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(path - host));
    if (at)
        host = at + 1;
    size_t head = scheme_end ? (size_t)(scheme_end + 3 - url) : 0;
    snprintf(out, len, "%.*s%.*s%.*s", (int)head, url, (int)(path - host), host,
             (int)strcspn(path, "?#"), path);
}
