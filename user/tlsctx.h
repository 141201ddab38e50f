/* tlsctx — the server SSL_CTX of one tls listener: its policy, certificates, ALPN, client
 * authentication and the options every ktlsd context has (no renegotiation, no resumption unless
 * asked, buffers released when idle). */
#ifndef KTLSD_TLSCTX_H
#define KTLSD_TLSCTX_H

#include <openssl/ssl.h>

#include "config.h"
#include "policy.h"

/* index is the listener's position in cfg->listeners, for error paths. */
int tlsctx_build(const struct config *cfg, size_t index, const struct policy *pol, SSL_CTX **out,
		 struct cfg_errors *errs) __must_check;

/* The index (into the listener's certificates) the ClientHello callback chose, or -1. */
int tlsctx_chosen_cert(SSL *ssl);

#endif
