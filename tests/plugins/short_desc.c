/*
 * A plugin whose descriptor is shorter than the core's: it declares its own
 * struct_size up to init and has no cleanup field at all, as a plugin of an
 * older minor would. The core reads no further than struct_size and takes
 * the missing fields as NULL.
 *   SHORT_PING {}  ->  SHORT_PONG {}
 */
#include <chatd/plugin.h>
#include <stddef.h>

static const chatd_host *host;

/* The descriptor's first fields, as an older header had them. */
struct short_desc {
    size_t struct_size;
    int abi_major;
    int abi_minor;
    const char *name;
    const char *version;
    int (*init)(chatd_plugin *p, const chatd_host *host, const json_t *config, void **state);
};

static int on_ping(chatd_req *req, const json_t *msg, void *state)
{
    (void)msg, (void)state;
    host->reply(req, "SHORT_PONG", NULL);
    return CHATD_OK;
}

static int short_init(chatd_plugin *p, const chatd_host *h, const json_t *config, void **state)
{
    (void)config;
    host = h;
    *state = (void *)&host; /* non-NULL: a cleanup, if read past the end, would be called */
    return h->on_message(p, "SHORT_PING", on_ping);
}

static const struct short_desc desc = {
    .struct_size = sizeof(struct short_desc),
    .abi_major = CHATD_ABI_MAJOR,
    .abi_minor = 0,
    .name = "short_desc",
    .version = "0.9",
    .init = short_init,
};

/* The entry point, by hand: the macro takes a chatd_plugin_desc. */
__attribute__((visibility("default"))) const chatd_plugin_desc *chatd_plugin_entry(void);
__attribute__((visibility("default"))) const chatd_plugin_desc *chatd_plugin_entry(void)
{
    return (const chatd_plugin_desc *)&desc;
}
