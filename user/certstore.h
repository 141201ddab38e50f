/* certstore — server certificates: load and validate PEM files, index their names, and pick one
 * per connection from the ClientHello by the rules of docs/configuration-certificates.md ("How the
 * certificate is chosen"). The rules and the choices behind them are written down at the top of
 * certstore_select.c.
 *
 * A struct certstore_cert is immutable once loaded, and has one owner; SSL objects it was applied
 * to hold their own references to its X509 and key, so it may be freed while they live. */
#ifndef KTLSD_CERTSTORE_H
#define KTLSD_CERTSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "hostname.h"

struct certstore_cert;

/* The ECDSA curves a certificate may use (certstore_cert_load refuses others: TLS 1.3 cannot sign
 * with them). A ClientHello can rule a curve out: TLS 1.3 binds the curve to the signature
 * algorithm, TLS 1.2 to the supported_groups extension. */
#define CERTSTORE_CURVE_P256 0x1u
#define CERTSTORE_CURVE_P384 0x2u
#define CERTSTORE_CURVE_P521 0x4u
#define CERTSTORE_CURVE_ALL 0x7u

/* Loads a PEM chain (leaf first, then intermediates, all of which are sent) and an unencrypted PEM
 * private key; cert_path and key_path may be the same file. Returns 0 and the certificate in *out
 * (certstore_cert_free frees it), or a negative errno and an operator-readable message naming the
 * file in err: -ENOENT/-EACCES/... the file cannot be read; -EINVAL not PEM (DER is recognised and
 * the conversion command given), empty, no certificate or key in it, malformed, key does not
 * match; -ENOTSUP encrypted key, key type other than RSA or ECDSA P-256/P-384/P-521. Expiry is not
 * checked (docs/configuration-certificates.md, "Server certificates"): see
 * certstore_cert_is_expired. */
int certstore_cert_load(const char *cert_path, const char *key_path, struct certstore_cert **out,
			char *err, size_t errlen) __attribute__((warn_unused_result));
/* Frees c; accepts NULL. */
void certstore_cert_free(struct certstore_cert *c);

/* The domains binding (docs/configuration-certificates.md, "Server certificates"): every domain
 * must match a name of the certificate, by
 * the same rules as selection: equal (case-insensitive, trailing dot ignored), or a host name
 * covered by one of the certificate's wildcards (one label). A wildcard domain ("*.example.com")
 * must appear as that wildcard in the certificate. Returns 0, or -EINVAL with the first domain
 * that does not match and the certificate's names in err. */
int certstore_cert_check_domains(const struct certstore_cert *c, const char *const *domains,
				 size_t n, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Tries the certificate on an SSL of ctx (the listener's, with its policy and security level):
 * catches a key too small or a chain signed with a digest the level forbids at config time
 * instead of at the first handshake. Returns 0 or -EINVAL with OpenSSL's reason in err. */
int certstore_cert_check_ctx(SSL_CTX *ctx, const struct certstore_cert *c, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Accessors. Strings live as long as the certificate. */
/* "RSA-2048", "ECDSA-P256": for ktlsctl certs and the handshake log line. */
const char *certstore_cert_key_desc(const struct certstore_cert *c);
time_t certstore_cert_not_before(const struct certstore_cert *c);
time_t certstore_cert_not_after(const struct certstore_cert *c);
/* True when now is past not-after. Loading never fails on it; the daemon warns and shows it. */
bool certstore_cert_is_expired(const struct certstore_cert *c, time_t now);
const char *certstore_cert_subject(const struct certstore_cert *c); /* RFC 2253, escaped */
const char *certstore_cert_path(const struct certstore_cert *c);
/* Names used for matching: subjectAltName DNS entries, then the last CN if it looks like a host
 * name; lowercased, trailing dot removed, duplicates dropped. */
size_t certstore_cert_name_count(const struct certstore_cert *c);
const char *certstore_cert_name(const struct certstore_cert *c, size_t i);
X509 *certstore_cert_leaf(const struct certstore_cert *c);	 /* borrowed */
size_t certstore_cert_chain_len(const struct certstore_cert *c); /* intermediates sent */

/* What the ClientHello says about the certificate the client can take. */
struct certstore_hello {
	char sni[256]; /* host_name of server_name, lowercased, trailing dot removed */
	bool has_sni;
	bool ecdsa_ok; /* an ECDSA certificate is usable (on a curve not in ecdsa_curves_bad) */
	bool rsa_ok;   /* an RSA certificate is usable */
	/* CERTSTORE_CURVE_* bits the client cannot use even when ecdsa_ok; 0 = no restriction, so
	 * a zeroed struct with ecdsa_ok set means "any curve". */
	unsigned int ecdsa_curves_bad;
	uint16_t version; /* what OpenSSL will negotiate (TLS1_x_VERSION), 0 if nothing */
};

/* Fills h inside a ClientHello callback (SSL_CTX_set_client_hello_cb), from the SSL_client_hello_*
 * accessors and the listener's settings on ssl (versions, TLS ≤1.2 cipher list, security level):
 * TLS 1.3 → a key type is usable iff signature_algorithms has a scheme for it; TLS ≤1.2 → iff
 * the client offers a cipher of the policy with that authentication and, for TLS 1.2, its
 * signature_algorithms (when sent) allow the key type. When no version can be agreed, both are
 * set and OpenSSL sends the protocol_version alert. Returns 0, or -EINVAL outside a callback. */
int certstore_hello_from_ssl(SSL *ssl, struct certstore_hello *h)
    __attribute__((warn_unused_result));
bool certstore_hello_can_use(const struct certstore_hello *h, const struct certstore_cert *c);

/* How a certificate name matches a host name: hostname_match() (hostname.h), the rules SNI
 * routing shares. */
#define CERTSTORE_SCORE_EXACT HOSTNAME_MATCH_EXACT
int certstore_name_match(const char *name, const char *host);

enum certstore_match {
	CERTSTORE_MATCH_NO_SNI,	  /* no server_name: the first certificate */
	CERTSTORE_MATCH_DEFAULT,  /* SNI matched nothing: the first certificate */
	CERTSTORE_MATCH_EXACT,	  /* SNI equals a name of the certificate */
	CERTSTORE_MATCH_WILDCARD, /* SNI matched a wildcard name */
};
const char *certstore_match_name(enum certstore_match m); /* "no-sni", "default", ... */

/* The rules of docs/configuration-certificates.md, "How the certificate is chosen". Returns the
 * index into certs[0..n) of the certificate to send, or -1 when the
 * certificate the rules choose has a key type the client cannot use (rule 5: the caller fails
 * the handshake; a worse-matching usable certificate is never sent instead) or n is 0. */
int certstore_select(struct certstore_cert *const *certs, size_t n,
		     const struct certstore_hello *h);
/* Same, and says why (also for -1, when how is not NULL). */
int certstore_select_ex(struct certstore_cert *const *certs, size_t n,
			const struct certstore_hello *h, enum certstore_match *how);

/* Makes c the only certificate of ssl: clears what the SSL_CTX gave it and installs leaf, key and
 * chain (OpenSSL takes its own references). Returns 0 or -EINVAL (OpenSSL's error queue says why,
 * e.g. the security level refuses the key). An SSL whose SSL_CTX holds exactly c (see
 * certstore_apply_ctx) has it already: nothing is done. */
int certstore_apply(SSL *ssl, const struct certstore_cert *c) __attribute__((warn_unused_result));
/* Makes c the only certificate of a fresh ctx, so that every SSL made from it starts with c and
 * certstore_apply has nothing to do per connection (a listener with one certificate). The
 * ClientHello callback still runs and still refuses clients that cannot use c. 0 or -EINVAL. */
int certstore_apply_ctx(SSL_CTX *ctx, const struct certstore_cert *c)
    __attribute__((warn_unused_result));

/* The body of a ClientHello callback: hello, select, apply. Returns SSL_CLIENT_HELLO_SUCCESS with
 * the chosen index in *chosen, or SSL_CLIENT_HELLO_ERROR with *al = SSL_AD_HANDSHAKE_FAILURE when
 * the client cannot use the chosen certificate (SSL_AD_INTERNAL_ERROR when applying fails) and
 * *chosen = -1. chosen may be NULL. The callback runs again for a ClientHello after a
 * HelloRetryRequest; it chooses the same certificate then. */
int certstore_on_client_hello(SSL *ssl, struct certstore_cert *const *certs, size_t n, int *al,
			      int *chosen);
/* Same, and copies the ClientHello summary and the reason of the choice for the log line (either
 * may be NULL), also when the handshake is refused. */
int certstore_on_client_hello_ex(SSL *ssl, struct certstore_cert *const *certs, size_t n, int *al,
				 int *chosen, struct certstore_hello *hello,
				 enum certstore_match *how);

/* Reads a whole PEM file into a memory BIO, with the checks every PEM input shares: readable,
 * regular, at most 16 MiB, not empty, PEM armour present (a DER file is named as such, with the
 * "openssl <tool> -inform DER" command that converts it). Returns 0 or a negative errno with the
 * reason, prefixed by path, in err. Also used by mtls for CA files and CRLs. */
int certstore_pem_read_file(const char *path, const char *tool, BIO **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
