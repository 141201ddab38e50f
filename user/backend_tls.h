/* backend_tls — TLS from ktlsd to the backend (listeners[].backend_tls).
 *
 * One client SSL_CTX per listener (backend_tls_ctx.h). Per connection, after the TCP connect to a
 * backend server (and after the PROXY header, which goes in clear before the ClientHello as HAProxy
 * sends it), one client SSL runs over the connection's own buffers through a BIO: it reads the
 * backend's records from conn.btls.in and writes its own into conn.btls.out, which the ring
 * receives into and sends from. OpenSSL never touches a socket. Forwarding then decrypts and
 * encrypts record by record in dp_userspace. */
#ifndef KTLSD_BACKEND_TLS_H
#define KTLSD_BACKEND_TLS_H

#include <openssl/ssl.h>

#include "err.h"
#include "stats.h"

struct conn;

/* Creates c->btls.ssl on ctx and writes its ClientHello into c->btls.out (after what is already
 * there). 0 or -ENOMEM. */
int backend_tls_start(struct conn *c, SSL_CTX *ctx) __must_check;
/* Advances the handshake: 1 = finished, 0 = needs I/O, negative = failed with *why (a static
 * text naming the reason: the X509 verification error, OpenSSL's reason, or EOF) and *kind
 * (STATS_BTLS_VERIFY or STATS_BTLS_HANDSHAKE). */
int backend_tls_step(struct conn *c, const char **why, enum stats_btls *kind);

#endif
