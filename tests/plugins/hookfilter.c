/*
 * A message filter for the hook tests, steered by the content it sees:
 *   reject:CODE:text   reject with the wire error CODE (FORBIDDEN, ...) and text
 *   rewrite:text       replace the content with text (which may be "")
 *   grow:N             replace it with N times 'x'
 *   late:MS:rest       answer later: PENDING, then after MS ms the verdict of rest
 *   chain:text         replace it with text + "+" + the setting tag (two filters
 *                      in a row make "chain:text+a+b")
 *   who                replace it with "TYPE SEQUENCE USERNAME CHANNEL" of its view
 *   badutf8            replace it with bytes that are not UTF-8 (a broken filter)
 *   noverdict          return CHATD_OK without a verdict (a broken filter)
 *   anything else      pass
 * HOOKFILTER_STATS {} answers {"seen", "late", "lateGiven"}: the filter's calls,
 * the verdicts it put off, and those it gave since. Built twice (hookfilter.so,
 * hookfilter2.so) so that two of them load side by side.
 */
#include <chatd/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct later {
    struct hookfilter *hf;
    chatd_filter *f;
    char *rest;
    struct later *next;
};

struct hookfilter {
    chatd_plugin *p;
    const chatd_host *host;
    char tag[32];
    long seen, late, late_given;
    struct later *laters; /* verdicts put off: freed at cleanup when their timer is dropped */
};

static const char *const code_names[] = {
    "",         "BAD_REQUEST",    "UNAUTHORIZED", "FORBIDDEN",   "NOT_FOUND",
    "CONFLICT", "LIMIT_EXCEEDED", "RATE_LIMITED", "UNAVAILABLE", "INTERNAL",
};

static chatd_error_code code_of(const char *name, size_t len)
{
    for (size_t i = 1; i < sizeof code_names / sizeof *code_names; i++)
        if (strlen(code_names[i]) == len && strncmp(code_names[i], name, len) == 0)
            return (chatd_error_code)i;
    return CHATD_ERR_FORBIDDEN;
}

static int judge(struct hookfilter *hf, chatd_filter *f, const chatd_message_view *m,
                 const char *content);

static void give_late(void *arg)
{
    struct later *l = arg;
    struct later **at = &l->hf->laters;
    while (*at != l)
        at = &(*at)->next;
    *at = l->next;
    l->hf->late_given++;
    judge(l->hf, l->f, NULL, l->rest);
    free(l->rest);
    free(l);
}

/* The verdict content asks for; CHATD_PENDING when it is put off. */
static int judge(struct hookfilter *hf, chatd_filter *f, const chatd_message_view *m,
                 const char *content)
{
    const chatd_host *h = hf->host;
    char buf[512];
    if (strncmp(content, "reject:", 7) == 0) {
        const char *code = content + 7, *text = strchr(code, ':');
        h->filter_reject(f, code_of(code, text ? (size_t)(text - code) : strlen(code)),
                         text ? text + 1 : NULL);
    } else if (strncmp(content, "rewrite:", 8) == 0) {
        h->filter_replace(f, content + 8);
    } else if (strncmp(content, "grow:", 5) == 0) {
        size_t n = strtoul(content + 5, NULL, 10);
        char *s = malloc(n + 1);
        if (!s)
            return CHATD_ENOMEM;
        memset(s, 'x', n);
        s[n] = '\0';
        h->filter_replace(f, s);
        free(s);
    } else if (strncmp(content, "late:", 5) == 0) {
        char *end;
        long ms = strtol(content + 5, &end, 10);
        struct later *l = calloc(1, sizeof *l);
        if (!l || !(l->rest = strdup(*end == ':' ? end + 1 : "pass"))) {
            free(l);
            return CHATD_ENOMEM;
        }
        l->hf = hf;
        l->f = f;
        if (h->after(hf->p, ms, give_late, l) < 0) {
            free(l->rest);
            free(l);
            return CHATD_ENOMEM;
        }
        hf->late++;
        l->next = hf->laters;
        hf->laters = l;
        return CHATD_PENDING;
    } else if (strncmp(content, "chain:", 6) == 0) {
        snprintf(buf, sizeof buf, "%s+%s", content, hf->tag);
        h->filter_replace(f, buf);
    } else if (strcmp(content, "who") == 0 && m) {
        snprintf(buf, sizeof buf, "%s %lld %s %lld", m->type, (long long)m->sequence, m->username,
                 (long long)m->channel_id);
        h->filter_replace(f, buf);
    } else if (strcmp(content, "badutf8") == 0) {
        h->filter_replace(f, "caf\xc3 \xff");
    } else if (strcmp(content, "noverdict") == 0) {
        return CHATD_OK;
    } else {
        h->filter_pass(f);
    }
    return CHATD_OK;
}

static int on_filter(chatd_filter *f, const chatd_message_view *m, void *state)
{
    struct hookfilter *hf = state;
    hf->seen++;
    return judge(hf, f, m, m->content);
}

static int on_stats(chatd_req *req, const json_t *msg, void *state)
{
    struct hookfilter *hf = state;
    (void)msg;
    hf->host->reply(req, "HOOKFILTER_STATS_RESPONSE",
                    json_pack("{s:s, s:I, s:I, s:I}", "tag", hf->tag, "seen", (json_int_t)hf->seen,
                              "late", (json_int_t)hf->late, "lateGiven",
                              (json_int_t)hf->late_given));
    return CHATD_OK;
}

static int hookfilter_init(chatd_plugin *p, const chatd_host *host, const json_t *config,
                           void **state)
{
    struct hookfilter *hf = calloc(1, sizeof *hf);
    if (!hf)
        return CHATD_ENOMEM;
    *state = hf;
    hf->p = p;
    hf->host = host;
    const char *tag = json_string_value(json_object_get(config, "tag"));
    snprintf(hf->tag, sizeof hf->tag, "%s", tag ? tag : "f");
    /* Both register the stats; the first one loaded answers them. */
    if (host->on_message_filter(p, on_filter) < 0 ||
        host->on_message(p, "HOOKFILTER_STATS", on_stats) < 0)
        return CHATD_EINVAL;
    return 0;
}

static void hookfilter_cleanup(void *state)
{
    struct hookfilter *hf = state;
    while (hf->laters) {
        struct later *l = hf->laters;
        hf->laters = l->next;
        free(l->rest);
        free(l);
    }
    free(hf);
}

static const chatd_setting hookfilter_settings[] = {
    CHATD_STRING_SETTING("tag", "f", NULL, "what chain: appends"),
    CHATD_SETTINGS_END,
};

static const chatd_plugin_desc hookfilter_desc = {
    CHATD_PLUGIN_DESC_HEAD,  .name = "hookfilter",          .version = "1.0",
    .init = hookfilter_init, .cleanup = hookfilter_cleanup, .settings = hookfilter_settings,
};

CHATD_PLUGIN(hookfilter_desc)
