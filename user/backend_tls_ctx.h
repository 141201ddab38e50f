/* backend_tls_ctx — the client SSL_CTX of a listener's TLS towards its backend, built next to the
 * server one whenever a state is built (startup and every reload): the listener's backend policy
 * (versions, ciphers, suites, groups, security level), verification of the backend's chain
 * against backend_tls.ca_file and of its name against backend_tls.sni, no session resumption (as
 * an AWS NLB does towards targets), no renegotiation (docs/configuration.md, "Backend TLS"). The
 * connections' side is backend_tls.h. */
#ifndef KTLSD_BACKEND_TLS_CTX_H
#define KTLSD_BACKEND_TLS_CTX_H

#include <openssl/ssl.h>

#include "config.h"

/* The client context of listener index of cfg, or *out = NULL when its backend_tls is off. Every
 * problem goes to errs naming the file and the JSON path. */
int backend_tls_ctx_build(const struct config *cfg, size_t index, SSL_CTX **out,
			  struct cfg_errors *errs) __must_check;

#endif
