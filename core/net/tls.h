/*
 * TLS on the listener's sockets: one SSL_CTX made from the tls.* settings and
 * handed to every connection accepted while it is current. A reload (SIGHUP)
 * makes a new one for the connections that come after; each connection keeps
 * the context it was accepted with (OpenSSL counts the references). Loop
 * thread only.
 */
#ifndef CHATD_TLS_H
#define CHATD_TLS_H

#include <stddef.h>

struct bufferevent;
struct event_base;

struct tls_config {
    const char *cert;        /* PEM file: the certificate, then its chain */
    const char *key;         /* PEM file: the private key (not encrypted) */
    const char *ciphers;     /* TLS 1.2 cipher list, in OpenSSL's syntax */
    const char *min_version; /* "1.2" or "1.3" */
};

/* Make the context from cfg (the strings are copied, for reloads). 0, or
 * CHATD_EINVAL / CHATD_ENOMEM with the reason, naming the setting, in err. */
int tls_init(const struct tls_config *cfg, char *err, size_t errlen);
/* Check cfg as tls_init would (files readable and parsed, key matching the
 * certificate, cipher list known), keeping nothing. 0 or CHATD_EINVAL. */
int tls_check(const struct tls_config *cfg, char *err, size_t errlen);
/* Whether tls_init made a context: the listener then speaks only TLS. */
int tls_enabled(void);
/* Read the certificate and key files again into a new context for the
 * connections accepted from now on. When they do not load, the old context
 * stays and the reason is logged. 0, or CHATD_EINVAL. */
int tls_reload(void);
/* Drop the current context (after the last connection was freed, or not:
 * connections hold their own reference). */
void tls_free(void);

/* A bufferevent speaking TLS as a server on the accepted socket fd, closing
 * fd and freeing the TLS state when it is freed; NULL when out of memory (fd
 * is then still the caller's). The handshake runs once the bufferevent is
 * enabled; BEV_EVENT_CONNECTED reports its end. */
struct bufferevent *tls_accept(struct event_base *base, int fd);
/* Whether bev is one of tls_accept's. */
int tls_is(struct bufferevent *bev);
/* Send close_notify, once, on a connection whose handshake finished; the
 * write is not waited for. Nothing on any other bufferevent. */
void tls_close_notify(struct bufferevent *bev);
/* Why TLS failed on bev (OpenSSL's reason, or "" when it gave none), for the
 * log: written into buf (len bytes), which is returned. */
const char *tls_error_text(struct bufferevent *bev, char *buf, size_t len);

#endif
