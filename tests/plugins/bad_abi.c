/* A plugin that claims a future ABI major: chatd must refuse to load it. */
#include <chatd/plugin.h>

static int bad_init(chatd_plugin *p, const chatd_host *host, const json_t *config, void **state)
{
    (void)p, (void)host, (void)config, (void)state;
    return 0;
}

static const chatd_plugin_desc bad_desc = {
    .struct_size = sizeof(chatd_plugin_desc),
    .abi_major = CHATD_ABI_MAJOR + 1,
    .abi_minor = 0,
    .name = "bad_abi",
    .version = "0",
    .init = bad_init,
};

CHATD_PLUGIN(bad_desc)
