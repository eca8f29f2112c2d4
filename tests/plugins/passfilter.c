/*
 * The cheapest message filter there is: it passes everything at once. Loaded
 * into a benchmark (tests/bench/scenario.py --plugin build/tests/plugins/
 * passfilter.so), it measures what one filter on the write path costs
 * (docs/BENCHMARKS.md, "The cost of a message filter").
 */
#include <chatd/plugin.h>

static const chatd_host *host;

static int on_filter(chatd_filter *f, const chatd_message_view *m, void *state)
{
    (void)m, (void)state;
    host->filter_pass(f);
    return CHATD_OK;
}

static int passfilter_init(chatd_plugin *p, const chatd_host *h, const json_t *config, void **state)
{
    (void)config, (void)state;
    host = h;
    return h->on_message_filter(p, on_filter);
}

static const chatd_setting passfilter_settings[] = {
    CHATD_SETTINGS_END,
};

static const chatd_plugin_desc passfilter_desc = {
    CHATD_PLUGIN_DESC_HEAD,
    .name = "passfilter",
    .version = "1.0",
    .init = passfilter_init,
    .settings = passfilter_settings,
};

CHATD_PLUGIN(passfilter_desc)
