/* backend_tls — TLS from ktlsd to the backend (listeners[].backend_tls).
 *
 * One client SSL_CTX per listener, built next to the server one whenever a state is built (startup
 * and every reload): the listener's backend policy (versions, ciphers, suites, groups, security
 * level), verification of the backend's chain against backend_tls.ca_file and of its name against
 * backend_tls.sni, no session resumption (as an AWS NLB does towards targets), no renegotiation
 * (docs/configuration.md, "Backend TLS").
 *
 * Per connection, after the TCP connect to a backend server (and after the PROXY header, which
 * goes in clear before the ClientHello as HAProxy sends it), one client SSL runs over the
 * connection's own buffers through a BIO: it reads the backend's records from conn.bcin and writes
 * its own into conn.bcout, which the ring receives into and sends from. OpenSSL never touches a
 * socket. Forwarding then decrypts and encrypts record by record in dp_userspace. */
#ifndef KTLSD_BACKEND_TLS_H
#define KTLSD_BACKEND_TLS_H

#include <openssl/ssl.h>

#include "config.h"
#include "stats.h"

struct conn;

/* The client context of listener index of cfg, or *out = NULL when its backend_tls is off. Every
 * problem goes to errs naming the file and the JSON path. */
int backend_tls_ctx_build(const struct config *cfg, size_t index, SSL_CTX **out,
			  struct cfg_errors *errs) __must_check;

/* Creates c->bssl on ctx and writes its ClientHello into c->bcout (after what is already there).
 * 0 or -ENOMEM. */
int backend_tls_start(struct conn *c, SSL_CTX *ctx) __must_check;
/* Advances the handshake: 1 = finished, 0 = needs I/O, negative = failed with *why (a static
 * text naming the reason: the X509 verification error, OpenSSL's reason, or EOF) and *kind
 * (STATS_BTLS_VERIFY or STATS_BTLS_HANDSHAKE). */
int backend_tls_step(struct conn *c, const char **why, enum stats_btls *kind);

#endif
