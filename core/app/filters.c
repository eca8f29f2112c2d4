/*
 * Message filters (ABI 1.1 hooks): the chain of every filter registered, run
 * on one WRITE_MESSAGE or EDIT_MESSAGE before it is stored. Each filter
 * passes, rejects or replaces the content, at once or later; the chain stops
 * at the first rejection, and fails UNAVAILABLE past its deadline. A chain
 * is freed once it is over and no filter owes it a verdict.
 */
#include "filters.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct filter_entry {
    void *owner;
    chatd_message_filter fn;
    void *state;
};

static struct {
    struct event_base *base;
    int64_t timeout_ms;
    struct filter_entry *v;
    size_t n;
} fl;

/* One message's run through the chain. */
struct chatd_filter {
    chatd_message_view view; /* its strings are ours */
    char *type, *username, *content;
    size_t next;  /* the filter called last, or to call */
    int waiting;  /* that filter owes its verdict */
    int in_call;  /* inside that filter's call */
    int finished; /* done was called */
    struct event *deadline;
    filter_done_fn done;
    void *arg;
};

void filters_init(struct event_base *base, int64_t timeout_ms)
{
    fl.base = base;
    fl.timeout_ms = timeout_ms;
}

void filters_set_timeout(int64_t timeout_ms)
{
    fl.timeout_ms = timeout_ms;
}

void filters_free(void)
{
    free(fl.v);
    memset(&fl, 0, sizeof fl);
}

int filters_add(void *owner, chatd_message_filter fn, void *state)
{
    struct filter_entry *v = realloc(fl.v, (fl.n + 1) * sizeof *v);
    if (!v)
        return CHATD_ENOMEM;
    fl.v = v;
    fl.v[fl.n++] = (struct filter_entry){owner, fn, state};
    return 0;
}

void filters_remove_owner(void *owner)
{
    size_t j = 0;
    for (size_t i = 0; i < fl.n; i++)
        if (fl.v[i].owner != owner)
            fl.v[j++] = fl.v[i];
    fl.n = j;
}

size_t filters_count(void)
{
    return fl.n;
}

static void chain_free(struct chatd_filter *f)
{
    if (f->deadline)
        event_free(f->deadline);
    free(f->type);
    free(f->username);
    free(f->content);
    free(f);
}

/* Free the chain once it is over and nothing refers to it any more. */
static void release_if_over(struct chatd_filter *f)
{
    if (f->finished && !f->waiting && !f->in_call)
        chain_free(f);
}

static void finish(struct chatd_filter *f, int status, chatd_error_code code, const char *msg)
{
    f->finished = 1;
    if (f->deadline)
        event_del(f->deadline);
    f->done(f->arg, status, status == 0 ? f->content : NULL, code, msg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct chatd_filter *f = arg;
    log_warn("a message filter gave no verdict within %lld ms: the write fails",
             (long long)fl.timeout_ms);
    finish(f, CHATD_EUNAVAIL, CHATD_ERR_UNAVAILABLE, "a message filter did not answer in time");
    release_if_over(f); /* a filter still owes its verdict: it frees the chain */
}

/* Call the filters from f->next on, until one answers later or all passed. */
static void advance(struct chatd_filter *f)
{
    while (!f->finished && f->next < fl.n) {
        const struct filter_entry *e = &fl.v[f->next];
        f->view.content = f->content;
        f->waiting = f->in_call = 1;
        int rc = e->fn(f, &f->view, e->state);
        f->in_call = 0;
        if (f->waiting) {
            if (rc == CHATD_PENDING)
                return; /* the verdict comes later */
            log_error("a message filter returned %d without a verdict", rc);
            f->waiting = 0;
            finish(f, CHATD_EINTERNAL, CHATD_ERR_INTERNAL, "a message filter failed");
        }
    }
    if (!f->finished)
        finish(f, 0, 0, NULL);
    release_if_over(f);
}

/* A verdict: the chain goes on, unless it ended meanwhile (the deadline). */
static void verdict(struct chatd_filter *f, int rejected, chatd_error_code code,
                    const char *message)
{
    f->waiting = 0;
    if (f->finished) { /* owed after the deadline, and now paid */
        release_if_over(f);
        return;
    }
    f->next++;
    if (rejected)
        finish(f, CHATD_EFORBIDDEN, code, message);
    if (!f->in_call) /* a later verdict: the chain goes on from here */
        advance(f);
}

void filter_pass(chatd_filter *f)
{
    verdict(f, 0, 0, NULL);
}

void filter_reject(chatd_filter *f, chatd_error_code code, const char *message)
{
    verdict(f, 1, code ? code : CHATD_ERR_FORBIDDEN, message ? message : "refused by a filter");
}

void filter_replace(chatd_filter *f, const char *content)
{
    char *copy = !f->finished && content ? strdup(content) : NULL;
    if (copy) {
        free(f->content);
        f->content = copy;
    }
    verdict(f, 0, 0, NULL);
}

int filters_run(const chatd_message_view *m, filter_done_fn done, void *arg)
{
    if (fl.n == 0) {
        done(arg, 0, m->content, 0, NULL);
        return 0;
    }
    struct chatd_filter *f = calloc(1, sizeof *f);
    if (!f || !(f->type = strdup(m->type ? m->type : "")) ||
        !(f->username = strdup(m->username ? m->username : "")) ||
        !(f->content = strdup(m->content ? m->content : "")) ||
        !(f->deadline = evtimer_new(fl.base, on_deadline, f))) {
        if (f)
            chain_free(f);
        return CHATD_ENOMEM;
    }
    f->view = *m;
    f->view.type = f->type;
    f->view.username = f->username;
    f->done = done;
    f->arg = arg;
    struct timeval tv = {fl.timeout_ms / 1000, (fl.timeout_ms % 1000) * 1000};
    evtimer_add(f->deadline, &tv);
    advance(f);
    return 0;
}
