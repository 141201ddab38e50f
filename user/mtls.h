/* mtls — client certificate authentication of a tls listener (config "client_auth"): the CA
 * bundle and CRL a client certificate is verified against, the verify mode, and what the logs
 * and the PROXY protocol say about the client afterwards. Any verification error denies access;
 * a CA file or CRL that cannot be used is a config error naming the file. */
#ifndef KTLSD_MTLS_H
#define KTLSD_MTLS_H

#include <stddef.h>

#include <openssl/ssl.h>

enum mtls_mode {
	MTLS_MODE_NONE,	    /* no certificate requested */
	MTLS_MODE_OPTIONAL, /* requested; a client may send none, but one it sends must verify */
	MTLS_MODE_REQUIRED, /* requested, and the handshake fails without a valid one */
};

/* Sets up ctx for mode. For OPTIONAL and REQUIRED: loads every certificate of ca_file (PEM) as a
 * trust anchor of a verify store of this context only (it is not used to build the server's own
 * chain), sends their subjects as the acceptable CA names, loads every CRL of crl_file (PEM, may
 * be NULL) and then checks the client certificate against its issuer's CRL (X509_V_FLAG_CRL_CHECK:
 * a client certificate whose issuer has no CRL in the file is refused), limits the chain to depth
 * intermediate CAs between the client certificate and a CA of the file (negative: OpenSSL's
 * default of 100), and sets a session id context derived from the files so a session never
 * resumes on a listener that trusts different CAs. Each CRL must be issued and signed by a CA of
 * ca_file and not be past its nextUpdate. NONE turns verification off and ignores the files.
 * Returns 0 or a negative errno with the reason, naming the file, in err. */
int mtls_configure(SSL_CTX *ctx, enum mtls_mode mode, const char *ca_file, const char *crl_file,
		   int depth, char *err, size_t errlen) __attribute__((warn_unused_result));

/* For the handshake log line: "ok", "not requested", "no client certificate", or OpenSSL's text
 * for the verification error ("certificate revoked", "certificate has expired", ...). Static. */
const char *mtls_verify_reason(SSL *ssl);

/* The verified client certificate's subject, RFC 2253 with control and non-ASCII bytes escaped.
 * Returns 0, -ENOENT without a client certificate, -EPERM if it did not verify, -ENOSPC when
 * truncated (buf still holds a terminated prefix). buf is "" on other errors. */
int mtls_peer_subject(SSL *ssl, char *buf, size_t len);
/* The verified client certificate's (last) CN as UTF-8, control bytes replaced by '?': for the
 * PROXY protocol v2 PP2_SUBTYPE_SSL_CN field. Same returns as mtls_peer_subject, and -ENOENT
 * when the subject has no CN. */
int mtls_peer_cn(SSL *ssl, char *buf, size_t len);

#endif
