#include "webhook_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct req {
    struct webhook *w;
    CURL *easy;
    struct curl_slist *headers;
    webhook_done_fn done;
    void *arg;
    uint64_t started_us;
    char error[CURL_ERROR_SIZE];
    struct req *prev, *next;
};

/* libcurl's sockets, each with its event. */
struct sock {
    struct webhook *w;
    curl_socket_t fd;
    struct event *ev;
    struct sock *prev, *next;
};

struct webhook {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    char *url, *secret, *ca_file;
    long timeout_ms;
    struct req *reqs;
    struct sock *socks;
    size_t in_flight;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void webhook_sign(const char *secret, const char *body, size_t len, char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, mac, &n);
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    out[64] = '\0';
}

/* ---- finished transfers ---- */

static void req_free(struct req *r)
{
    struct webhook *w = r->w;
    if (r->prev)
        r->prev->next = r->next;
    else
        w->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    curl_multi_remove_handle(w->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    w->in_flight--;
    free(r);
}

static void finished(struct webhook *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct req *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        long status = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        CURLcode rc = m->data.result;
        char why[CURL_ERROR_SIZE + 32];
        if (rc != CURLE_OK)
            snprintf(why, sizeof why, "%s", r->error[0] ? r->error : curl_easy_strerror(rc));
        else
            snprintf(why, sizeof why, "HTTP %ld", status);
        int delivered = rc == CURLE_OK && status >= 200 && status < 300;
        webhook_done_fn done = r->done;
        void *arg = r->arg;
        uint64_t took = now_us() - r->started_us;
        req_free(r);
        done(arg, delivered, rc == CURLE_OK ? status : 0, delivered ? NULL : why, took);
    }
}

/* ---- libcurl's sockets and timer on the loop ---- */

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct sock *s = arg;
    struct webhook *w = s->w;
    int action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(w->multi, fd, action, &running);
    finished(w);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct webhook *w = arg;
    int running;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    finished(w);
}

static void sock_free(struct sock *s)
{
    struct webhook *w = s->w;
    if (s->prev)
        s->prev->next = s->next;
    else
        w->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    event_free(s->ev);
    free(s);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct webhook *w = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_free(s);
        return 0;
    }
    if (!s) {
        if (!(s = calloc(1, sizeof *s)))
            return -1;
        s->w = w;
        s->fd = fd;
        s->next = w->socks;
        if (w->socks)
            w->socks->prev = s;
        w->socks = s;
        curl_multi_assign(w->multi, fd, s);
    }
    short events =
        EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (s->ev)
        event_free(s->ev);
    if (!(s->ev = event_new(w->base, fd, events, on_socket, s)) || event_add(s->ev, NULL) < 0)
        return -1;
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct webhook *w = userp;
    if (timeout_ms < 0)
        return evtimer_del(w->timer);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(w->timer, &tv);
}

/* ---- requests ---- */

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p, (void)arg;
    return size * n;
}

int webhook_post(struct webhook *w, const char *id, const char *body, size_t len,
                 webhook_done_fn done, void *arg)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r || !(r->easy = curl_easy_init())) {
        free(r);
        return -1;
    }
    r->w = w;
    r->done = done;
    r->arg = arg;
    char line[160];
    snprintf(line, sizeof line, "X-Chatd-Id: %s", id);
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    r->headers = curl_slist_append(r->headers, line);
    r->headers = curl_slist_append(r->headers, "Expect:"); /* no 100-continue round trip */
    if (w->secret) {
        char sig[65];
        webhook_sign(w->secret, body, len, sig);
        snprintf(line, sizeof line, "X-Chatd-Signature: sha256=%s", sig);
        r->headers = curl_slist_append(r->headers, line);
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, w->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, w->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "chatd-push");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    if (w->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, w->ca_file);
    r->started_us = now_us();
    r->next = w->reqs;
    if (w->reqs)
        w->reqs->prev = r;
    w->reqs = r;
    w->in_flight++;
    if (!r->headers || curl_multi_add_handle(w->multi, e) != CURLM_OK) {
        req_free(r);
        return -1;
    }
    return 0;
}

size_t webhook_in_flight(const struct webhook *w)
{
    return w->in_flight;
}

static int global_users;

struct webhook *webhook_new(struct event_base *base, const struct webhook_conf *conf, char *err,
                            size_t errlen)
{
    if (!conf->url || (strncmp(conf->url, "http://", 7) && strncmp(conf->url, "https://", 8))) {
        snprintf(err, errlen, "url must start with http:// or https://");
        return NULL;
    }
    if (global_users++ == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        global_users--;
        snprintf(err, errlen, "libcurl did not start");
        return NULL;
    }
    struct webhook *w = calloc(1, sizeof *w);
    if (!w || !(w->url = strdup(conf->url)) ||
        (conf->secret && conf->secret[0] && !(w->secret = strdup(conf->secret))) ||
        (conf->ca_file && conf->ca_file[0] && !(w->ca_file = strdup(conf->ca_file))) ||
        !(w->multi = curl_multi_init()) || !(w->timer = evtimer_new(base, on_timeout, w))) {
        snprintf(err, errlen, "out of memory");
        if (w)
            webhook_free(w);
        else if (--global_users == 0)
            curl_global_cleanup();
        return NULL;
    }
    w->base = base;
    w->timeout_ms = (long)conf->timeout_ms;
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    return w;
}

void webhook_free(struct webhook *w)
{
    if (!w)
        return;
    while (w->reqs) {
        struct req *r = w->reqs;
        webhook_done_fn done = r->done;
        void *arg = r->arg;
        req_free(r);
        done(arg, 0, 0, "cancelled", 0);
    }
    if (w->multi)
        curl_multi_cleanup(w->multi);
    while (w->socks)
        sock_free(w->socks);
    if (w->timer)
        event_free(w->timer);
    free(w->url);
    free(w->secret);
    free(w->ca_file);
    free(w);
    if (--global_users == 0)
        curl_global_cleanup();
}
