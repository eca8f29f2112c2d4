/*
 * An example chatd plugin, built outside the chatd tree against the installed
 * header: it answers {"type":"ECHO_REQUEST","text":...} with
 * {"type":"ECHO_RESPONSE","text": prefix + text} and counts what it echoed.
 *
 *   make                      # uses pkg-config chatd-plugin
 *   plugins = ( ..., { name = "echo"; path = "/path/to/echo.so"; prefix = "echo: "; } );
 */
#include <chatd/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct echo {
    chatd_plugin *p;
    const chatd_host *host;
    char prefix[64];
};

static int on_echo(chatd_req *req, const json_t *msg, void *state)
{
    struct echo *e = state;
    const char *text = json_string_value(json_object_get(msg, "text"));
    if (!text)
        return e->host->error(req, CHATD_ERR_BAD_REQUEST, "text must be a string"), CHATD_OK;
    size_t n = strlen(e->prefix) + strlen(text) + 1;
    char *out = malloc(n);
    if (!out)
        return CHATD_ENOMEM;
    snprintf(out, n, "%s%s", e->prefix, text);
    e->host->count(e->p, "echo_messages", 1);
    e->host->reply(req, "ECHO_RESPONSE",
                   json_pack("{s:s, s:s}", "text", out, "from", e->host->req_username(req)));
    free(out);
    return CHATD_OK;
}

static int echo_init(chatd_plugin *p, const chatd_host *host, const json_t *config, void **state)
{
    /* A host older than this header may lack calls we use: check before use. */
    if (!CHATD_HOST_HAS(host, on_message) || !CHATD_HOST_HAS(host, reply))
        return CHATD_EINVAL;
    struct echo *e = calloc(1, sizeof *e);
    if (!e)
        return CHATD_ENOMEM;
    e->p = p;
    e->host = host;
    const char *prefix = json_string_value(json_object_get(config, "prefix"));
    snprintf(e->prefix, sizeof e->prefix, "%s", prefix ? prefix : "");
    *state = e;
    host->log(p, CHATD_LOG_INFO, "echo plugin ready (prefix '%s')", e->prefix);
    return host->on_message(p, "ECHO_REQUEST", on_echo);
}

static void echo_cleanup(void *state)
{
    free(state);
}

/* The settings of its config entry: chatd checks them (unknown keys, types)
 * before init, lists them in --help, and fills in the defaults. */
static const chatd_setting echo_settings[] = {
    CHATD_STRING_SETTING("prefix", "", NULL, "put before each echoed text"),
    CHATD_SETTINGS_END,
};

static const chatd_plugin_desc echo_desc = {
    CHATD_PLUGIN_DESC_HEAD, .name = "echo",          .version = "1.1",
    .init = echo_init,      .cleanup = echo_cleanup, .settings = echo_settings,
};

CHATD_PLUGIN(echo_desc)
