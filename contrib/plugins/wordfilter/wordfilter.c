/*
 * wordfilter: a chatd message filter. Every WRITE_MESSAGE and EDIT_MESSAGE
 * that contains a word of a list is rejected (FORBIDDEN), or stored with the
 * word masked ("darn it" becomes "**** it"). Words match whole and without
 * regard to ASCII case. The list is a file, one word a line ('#' starts a
 * comment line), read at start and again on SIGHUP.
 *
 *   make                      # uses pkg-config chatd-plugin
 *   plugins = ( ..., { name = "wordfilter"; path = "/path/to/wordfilter.so";
 *                      file = "/etc/chatd/words.txt"; action = "mask"; } );
 */
#include <chatd/plugin.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct wordfilter {
    chatd_plugin *p;
    const chatd_host *host;
    char path[4096];
    int mask;     /* 1: mask the words; 0: reject the message */
    char **words; /* lower case */
    size_t n_words;
};

static void words_free(char **words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(words[i]);
    free(words);
}

/* Read the list from wf->path. On any failure the list in use stays as it
 * was: a broken file on SIGHUP does not switch the filter off. */
static int words_load(struct wordfilter *wf)
{
    FILE *in = fopen(wf->path, "r");
    if (!in) {
        wf->host->log(wf->p, CHATD_LOG_ERROR, "cannot read %s: %s", wf->path, strerror(errno));
        return CHATD_EINVAL;
    }
    char **words = NULL, line[256];
    size_t n = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, in)) {
        if (!strchr(line, '\n') && !feof(in)) { /* longer than a word may be: skip it */
            int c;
            while ((c = fgetc(in)) != EOF && c != '\n')
                ;
            wf->host->log(wf->p, CHATD_LOG_WARN, "%s: a line of more than %zu bytes is skipped",
                          wf->path, sizeof line - 2);
            continue;
        }
        size_t len = strcspn(line, " \t\r\n");
        line[len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        for (size_t i = 0; i < len; i++)
            line[i] = (char)tolower((unsigned char)line[i]);
        char **grown = realloc(words, (n + 1) * sizeof *words);
        if (!grown || !(grown[n] = strdup(line))) {
            words = grown ? grown : words;
            rc = CHATD_ENOMEM;
            break;
        }
        words = grown;
        n++;
    }
    if (ferror(in))
        rc = CHATD_EINVAL;
    fclose(in);
    if (rc < 0) {
        wf->host->log(wf->p, CHATD_LOG_ERROR, "cannot read %s: the old list stays", wf->path);
        words_free(words, n);
        return rc;
    }
    words_free(wf->words, wf->n_words);
    wf->words = words;
    wf->n_words = n;
    wf->host->log(wf->p, CHATD_LOG_INFO, "%zu words from %s", n, wf->path);
    return 0;
}

/* Letters, digits, '_', and every byte of a non-ASCII UTF-8 character (most
 * of them are letters): "darned" and "darnü" hold no "darn". */
static int is_word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || ((unsigned char)c & 0x80);
}

/* The length of the listed word at content + i, or 0 when none starts there. */
static size_t word_at(const struct wordfilter *wf, const char *content, size_t i)
{
    if (i > 0 && is_word_char(content[i - 1]))
        return 0;
    for (size_t k = 0; k < wf->n_words; k++) {
        size_t len = strlen(wf->words[k]);
        if (strncasecmp(content + i, wf->words[k], len) == 0 && !is_word_char(content[i + len]))
            return len;
    }
    return 0;
}

static int on_filter(chatd_filter *f, const chatd_message_view *m, void *state)
{
    struct wordfilter *wf = state;
    const chatd_host *h = wf->host;
    size_t n = strlen(m->content);
    char *out = malloc(n + 1);
    size_t o = 0, found = 0;
    if (!out)
        return CHATD_ENOMEM; /* no verdict: the write fails, nothing is stored */
    for (size_t i = 0; i < n;) {
        size_t len = word_at(wf, m->content, i);
        if (len == 0) {
            out[o++] = m->content[i++];
            continue;
        }
        found++;
        for (size_t end = i + len; i < end; i++)
            if (((unsigned char)m->content[i] & 0xC0) != 0x80)
                out[o++] = '*'; /* one star per character, not per UTF-8 byte */
    }
    out[o] = '\0';
    if (found == 0)
        h->filter_pass(f);
    else if (wf->mask)
        h->filter_replace(f, out);
    else
        h->filter_reject(f, CHATD_ERR_FORBIDDEN, "the message holds a word that is not allowed");
    if (found)
        h->count(wf->p, wf->mask ? "wordfilter_masked" : "wordfilter_rejected", 1);
    free(out);
    return CHATD_OK;
}

/* SIGHUP: the operator changed the list. */
static void on_reload(const chatd_event *ev, void *state)
{
    (void)ev;
    words_load(state);
}

static int wordfilter_init(chatd_plugin *p, const chatd_host *host, const json_t *config,
                           void **state)
{
    if (!CHATD_HOST_HAS(host, on_message_filter)) {
        host->log(p, CHATD_LOG_ERROR, "this chatd has no message filters (ABI 1.1 needed)");
        return CHATD_EINVAL;
    }
    struct wordfilter *wf = calloc(1, sizeof *wf);
    if (!wf)
        return CHATD_ENOMEM;
    *state = wf; /* cleanup frees it, even when init fails below */
    wf->p = p;
    wf->host = host;
    /* The core checked both settings and filled in the default of action. */
    const char *file = json_string_value(json_object_get(config, "file"));
    const char *action = json_string_value(json_object_get(config, "action"));
    if (!file || !*file) {
        host->log(p, CHATD_LOG_ERROR, "setting 'file' is required: the list of words");
        return CHATD_EINVAL;
    }
    /* A relative path is read from server.data_dir, the directory chatd runs in. */
    snprintf(wf->path, sizeof wf->path, "%s%s%s", file[0] == '/' ? "" : host->data_dir(),
             file[0] == '/' ? "" : "/", file);
    wf->mask = action && strcmp(action, "mask") == 0;
    if (words_load(wf) < 0)
        return CHATD_EINVAL;
    if (host->on_message_filter(p, on_filter) < 0 ||
        host->on_event(p, CHATD_EVENT_RELOAD, on_reload) < 0)
        return CHATD_EINVAL;
    return 0;
}

static void wordfilter_cleanup(void *state)
{
    struct wordfilter *wf = state;
    words_free(wf->words, wf->n_words);
    free(wf);
}

static const char *const actions[] = {"reject", "mask", NULL};

static const chatd_setting wordfilter_settings[] = {
    CHATD_STRING_SETTING("file", NULL, NULL,
                         "the list of words, one a line (relative: to server.data_dir)"),
    CHATD_STRING_SETTING("action", "reject", actions,
                         "reject: refuse the message (FORBIDDEN); mask: star the words out"),
    CHATD_SETTINGS_END,
};

static const chatd_plugin_desc wordfilter_desc = {
    CHATD_PLUGIN_DESC_HEAD,  .name = "wordfilter",          .version = "1.0",
    .init = wordfilter_init, .cleanup = wordfilter_cleanup, .settings = wordfilter_settings,
};

CHATD_PLUGIN(wordfilter_desc)
