/*
 * A plugin built against a frozen copy of the ABI 1.0 header
 * (tests/plugins/abi-1.0/chatd/plugin.h): a newer chatd keeps loading it.
 *   ABI10_PING {}  ->  ABI10_PONG {"hostMinor", "hostSize"}
 */
#include <chatd/plugin.h>
#include <stdlib.h>

struct abi10 {
    const chatd_host *host;
};

static int on_ping(chatd_req *req, const json_t *msg, void *state)
{
    struct abi10 *a = state;
    (void)msg;
    a->host->reply(req, "ABI10_PONG",
                   json_pack("{s:i, s:I}", "hostMinor", a->host->abi_minor, "hostSize",
                             (json_int_t)a->host->struct_size));
    return CHATD_OK;
}

static int abi10_init(chatd_plugin *p, const chatd_host *host, const json_t *config, void **state)
{
    (void)config;
    if (host->struct_size < sizeof(chatd_host) || CHATD_ABI_MINOR != 0)
        return CHATD_EINVAL; /* built against 1.0 and given at least 1.0's table */
    struct abi10 *a = calloc(1, sizeof *a);
    if (!a)
        return CHATD_ENOMEM;
    a->host = host;
    *state = a;
    return host->on_message(p, "ABI10_PING", on_ping);
}

static void abi10_cleanup(void *state)
{
    free(state);
}

static const chatd_plugin_desc abi10_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "abi10",          .version = "1.0",
    .init = abi10_init,     .cleanup = abi10_cleanup,
};

CHATD_PLUGIN(abi10_desc)
