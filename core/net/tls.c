/*
 * TLS contexts: made from the files, replaced on reload. Every OpenSSL call
 * here leaves the thread's error queue empty, so an error of ours is never
 * read later as one of a connection's (libevent reads the queue after its
 * own calls).
 */
#include "tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatd/plugin.h"
#include "log.h"
#include "metrics.h"

static struct {
    SSL_CTX *ctx; /* for the connections accepted from now on */
    char *cert, *key, *ciphers, *min_version;
} tls;

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* OpenSSL's reason for the last failure, and an empty queue. */
static const char *last_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return why ? why : "unknown error";
}

/* A key file with a passphrase fails to load instead of asking a terminal
 * (at start-up or, worse, on SIGHUP). */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf, (void)size, (void)rwflag, (void)arg;
    return 0;
}

/* The TLS 1.2 ciphers, the oldest version and the files of cfg. */
static int ctx_configure(SSL_CTX *ctx, const struct tls_config *cfg, char *err, size_t errlen)
{
    int min = strcmp(cfg->min_version, "1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(ctx, min) != 1) {
        errf(err, errlen, "setting 'tls.min_version': %s", last_reason());
        return CHATD_EINVAL;
    }
    if (SSL_CTX_set_cipher_list(ctx, cfg->ciphers) != 1) {
        errf(err, errlen, "setting 'tls.ciphers': \"%s\": %s", cfg->ciphers, last_reason());
        return CHATD_EINVAL;
    }
    /* Renegotiation asked by a client only costs us handshakes. A TCP close
     * without close_notify ends the stream as it does without TLS (HTTP and
     * WebSocket frames carry their own lengths: a cut is seen as one), so a
     * client that half-closes after its request still gets the answer.
     * Buffers of idle connections are given back: 34 KiB each otherwise. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
        errf(err, errlen, "setting 'tls.cert': cannot load a certificate from %s: %s", cfg->cert,
             last_reason());
        return CHATD_EINVAL;
    }
    /* A key that loads but is not the certificate's fails here or below. */
    int loaded = SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) == 1;
    unsigned long e = loaded ? 0 : ERR_peek_last_error();
    if (!loaded &&
        (ERR_GET_LIB(e) != ERR_LIB_X509 || ERR_GET_REASON(e) != X509_R_KEY_VALUES_MISMATCH)) {
        errf(err, errlen, "setting 'tls.key': cannot load a private key from %s: %s", cfg->key,
             last_reason());
        return CHATD_EINVAL;
    }
    if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        errf(err, errlen,
             "setting 'tls.key': the key in %s is not the one of the certificate in %s", cfg->key,
             cfg->cert);
        return CHATD_EINVAL;
    }
    return 0;
}

/* A new context from cfg, or NULL with the reason in err. */
static SSL_CTX *ctx_new(const struct tls_config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        errf(err, errlen, "TLS: cannot make a context: %s", last_reason());
        return NULL;
    }
    if (ctx_configure(ctx, cfg, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void config_forget(void)
{
    free(tls.cert), free(tls.key), free(tls.ciphers), free(tls.min_version);
    tls.cert = tls.key = tls.ciphers = tls.min_version = NULL;
}

int tls_check(const struct tls_config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(cfg, err, errlen);
    if (!ctx)
        return CHATD_EINVAL;
    SSL_CTX_free(ctx);
    return 0;
}

int tls_init(const struct tls_config *cfg, char *err, size_t errlen)
{
    tls_free();
    if (!(tls.cert = strdup(cfg->cert)) || !(tls.key = strdup(cfg->key)) ||
        !(tls.ciphers = strdup(cfg->ciphers)) || !(tls.min_version = strdup(cfg->min_version))) {
        config_forget();
        errf(err, errlen, "TLS: out of memory");
        return CHATD_ENOMEM;
    }
    if (!(tls.ctx = ctx_new(cfg, err, errlen))) {
        config_forget();
        return CHATD_EINVAL;
    }
    /* Both counters are shown from the start, at 0. */
    metrics_count("tls_handshakes", 0);
    metrics_count("tls_handshake_failures", 0);
    log_info("TLS on: certificate %s, TLS %s and later", tls.cert, tls.min_version);
    return 0;
}

int tls_enabled(void)
{
    return tls.ctx != NULL;
}

int tls_reload(void)
{
    if (!tls.ctx)
        return 0;
    const struct tls_config cfg = {tls.cert, tls.key, tls.ciphers, tls.min_version};
    char err[512];
    SSL_CTX *ctx = ctx_new(&cfg, err, sizeof err);
    if (!ctx) {
        metrics_count("tls_reload_failures", 1);
        log_error("TLS reload failed, the certificate in use stays: %s", err);
        return CHATD_EINVAL;
    }
    SSL_CTX_free(tls.ctx); /* connections still on it hold their own reference */
    tls.ctx = ctx;
    log_info("TLS certificate reloaded from %s", tls.cert);
    return 0;
}

void tls_free(void)
{
    SSL_CTX_free(tls.ctx);
    tls.ctx = NULL;
    config_forget();
}

struct bufferevent *tls_accept(struct event_base *base, int fd)
{
    SSL *ssl = tls.ctx ? SSL_new(tls.ctx) : NULL;
    if (!ssl) {
        ERR_clear_error();
        return NULL;
    }
    /* On failure libevent frees ssl, and leaves fd open. */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    ERR_clear_error();
    if (!bev)
        return NULL;
    /* A peer that closes TCP without close_notify (most do, after their last
     * answer) has ended the stream, not broken it: EOF, as without TLS. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int tls_is(struct bufferevent *bev)
{
    return bufferevent_openssl_get_ssl(bev) != NULL;
}

void tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl || !SSL_is_init_finished(ssl) || (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        return;
    SSL_shutdown(ssl); /* one alert, written now or never: we do not wait for the peer's */
    ERR_clear_error();
}

const char *tls_error_text(struct bufferevent *bev, char *buf, size_t len)
{
    /* libevent keeps SSL_get_error's code, then the queue's errors, and gives
     * them back last first: the one that counts is the first of the queue. */
    unsigned long e, first = 0, code = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (ERR_GET_LIB(e) != 0)
            first = e;
        else
            code = e;
    }
    const char *why = first ? ERR_reason_error_string(first) : NULL;
    if (why)
        snprintf(buf, len, "%s", why);
    else if (first)
        snprintf(buf, len, "error %lx", first);
    else if (code == SSL_ERROR_SYSCALL)
        snprintf(buf, len, "the connection ended or failed");
    else
        snprintf(buf, len, "%s", "");
    return buf;
}
