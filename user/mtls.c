/* mtls.c — client certificate verification setup and reporting. OpenSSL does the verification;
 * this loads and checks what it verifies against, so a bad CA file or CRL is refused when the
 * config loads rather than by every handshake. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "errmsg.h"
#include "certstore.h"
#include "mtls.h"

#define MTLS_MAX_DEPTH 100

static bool pem_at_end(void)
{
	unsigned long e = ERR_peek_last_error();

	return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static const char *const mode_names[] = { "none", "optional", "required" };

static const char *mtls_mode_name(enum mtls_mode m)
{
	return (unsigned int)m < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[m] : "?";
}

static void name_text(const X509_NAME *n, char *buf, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	long l;

	snprintf(buf, len, "?");
	if (!b)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
		l = BIO_get_mem_data(b, &p);
		snprintf(buf, len, "%.*s", (int)(l > 0 ? l : 0), p ? p : "");
	}
	BIO_free(b);
}

/* Every certificate of the CA file into store, their subjects (once each) into names. */
static int load_cas(const char *path, BIO *bio, X509_STORE *store, STACK_OF(X509_NAME) *names,
		    STACK_OF(X509) *cas, char *err, size_t errlen)
{
	char why[128];
	X509 *x;
	int n = 0;

	ERR_clear_error();
	while ((x = PEM_read_bio_X509(bio, NULL, no_password, NULL)) != NULL) {
		const X509_NAME *subj = X509_get_subject_name(x);
		X509_NAME *dup = NULL;
		bool seen = false;

		n++;
		if (!X509_STORE_add_cert(store, x) || !sk_X509_push(cas, x)) {
			X509_free(x);
			return -ENOMEM;
		}
		for (int i = 0; i < sk_X509_NAME_num(names) && !seen; i++)
			seen = X509_NAME_cmp(sk_X509_NAME_value(names, i), subj) == 0;
		if (!seen && (!(dup = X509_NAME_dup(subj)) || !sk_X509_NAME_push(names, dup))) {
			X509_NAME_free(dup);
			return -ENOMEM;
		}
	}
	if (!pem_at_end()) {
		errmsg_set(err, errlen, "%s: certificate #%d is malformed (%s)", path, n + 1,
			   errmsg_ossl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	ERR_clear_error();
	if (n == 0) {
		errmsg_set(err, errlen,
			   "%s: no CA certificate found (expected \"-----BEGIN CERTIFICATE-----\" "
			   "blocks)",
			   path);
		return -EINVAL;
	}
	return 0;
}

static X509 *find_issuer(STACK_OF(X509) *cas, const X509_CRL *crl)
{
	for (int i = 0; i < sk_X509_num(cas); i++) {
		X509 *ca = sk_X509_value(cas, i);

		if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 &&
		    X509_CRL_verify((X509_CRL *)crl, X509_get0_pubkey(ca)) == 1)
			return ca;
		ERR_clear_error();
	}
	return NULL;
}

/* Every CRL of the file into store, each checked against the CAs: issued and signed by one of
 * them, and not past its nextUpdate (OpenSSL would then refuse every certificate it covers). */
static int load_crls(const char *path, const char *ca_path, BIO *bio, X509_STORE *store,
		     STACK_OF(X509) *cas, char *err, size_t errlen)
{
	char why[128], who[256];
	X509_CRL *crl;
	int n = 0, ret = 0;

	ERR_clear_error();
	while ((crl = PEM_read_bio_X509_CRL(bio, NULL, no_password, NULL)) != NULL) {
		const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);

		n++;
		name_text(X509_CRL_get_issuer(crl), who, sizeof(who));
		if (!find_issuer(cas, crl)) {
			errmsg_set(err, errlen,
				   "%s: CRL #%d is from \"%s\", which is not a CA of %s (or its "
				   "signature does not verify with that CA's key)",
				   path, n, who, ca_path);
			ret = -EINVAL;
		} else if (next && X509_cmp_current_time(next) < 0) {
			errmsg_set(err, errlen,
				   "%s: CRL #%d from \"%s\" is out of date (past its "
				   "nextUpdate): every client certificate of that CA would be "
				   "refused; publish a new CRL",
				   path, n, who);
			ret = -EINVAL;
		} else if (!X509_STORE_add_crl(store, crl)) {
			ret = -ENOMEM;
		}
		X509_CRL_free(crl);
		if (ret < 0)
			return ret;
	}
	if (!pem_at_end()) {
		errmsg_set(err, errlen, "%s: CRL #%d is malformed (%s)", path, n + 1,
			   errmsg_ossl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	ERR_clear_error();
	if (n == 0) {
		errmsg_set(err, errlen,
			   "%s: no CRL found (expected \"-----BEGIN X509 CRL-----\" blocks)", path);
		return -EINVAL;
	}
	return 0;
}

/* SHA-256 of the mode and both files: equal settings, equal context; 32 bytes is
 * SSL_MAX_SID_CTX_LENGTH. */
static int set_sid_ctx(SSL_CTX *ctx, enum mtls_mode mode, BIO *ca, BIO *crl)
{
	unsigned char md[EVP_MAX_MD_SIZE], m = (unsigned char)mode;
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	unsigned int mdlen = 0;
	char *p;
	long len;
	int ok;

	ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(h, "ktlsd-mtls", 10) && EVP_DigestUpdate(h, &m, 1);
	if (ok) {
		len = BIO_get_mem_data(ca, &p);
		ok = EVP_DigestUpdate(h, p, (size_t)len);
	}
	if (ok && crl) {
		len = BIO_get_mem_data(crl, &p);
		ok = EVP_DigestUpdate(h, p, (size_t)len);
	}
	ok = ok && EVP_DigestFinal_ex(h, md, &mdlen) &&
	     SSL_CTX_set_session_id_context(ctx, md, mdlen > 32 ? 32 : mdlen);
	EVP_MD_CTX_free(h);
	return ok ? 0 : -ENOMEM;
}

int mtls_configure(SSL_CTX *ctx, enum mtls_mode mode, const char *ca_file, const char *crl_file,
		   int depth, char *err, size_t errlen)
{
	STACK_OF(X509_NAME) *names = NULL;
	STACK_OF(X509) *cas = NULL;
	X509_STORE *store = NULL;
	BIO *ca_bio = NULL, *crl_bio = NULL;
	X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
	int ret = 0;

	if (mode == MTLS_MODE_NONE) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_client_CA_list(ctx, NULL);
		return 0;
	}
	if (mode != MTLS_MODE_OPTIONAL && mode != MTLS_MODE_REQUIRED) {
		errmsg_set(err, errlen, "unknown client_auth mode %d", (int)mode);
		return -EINVAL;
	}
	if (!ca_file) {
		errmsg_set(err, errlen, "client_auth mode \"%s\" needs a CA file",
			   mtls_mode_name(mode));
		return -EINVAL;
	}
	if (depth > MTLS_MAX_DEPTH) {
		errmsg_set(err, errlen, "client_auth depth %d is more than %d", depth,
			   MTLS_MAX_DEPTH);
		return -EINVAL;
	}
	ret = -ENOMEM;
	store = X509_STORE_new();
	names = sk_X509_NAME_new_null();
	cas = sk_X509_new_null();
	if (!store || !names || !cas)
		goto cleanup;
	ret = certstore_pem_read_file(ca_file, "x509", &ca_bio, err, errlen);
	if (ret < 0)
		goto cleanup;
	ret = load_cas(ca_file, ca_bio, store, names, cas, err, errlen);
	if (ret < 0)
		goto cleanup;
	if (crl_file) {
		ret = certstore_pem_read_file(crl_file, "crl", &crl_bio, err, errlen);
		if (ret < 0)
			goto cleanup;
		ret = load_crls(crl_file, ca_file, crl_bio, store, cas, err, errlen);
		if (ret < 0)
			goto cleanup;
		X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
	} else {
		X509_VERIFY_PARAM_clear_flags(param,
					      X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	}
	ret = set_sid_ctx(ctx, mode, ca_bio, crl_bio);
	if (ret < 0)
		goto cleanup;
	if (depth >= 0)
		SSL_CTX_set_verify_depth(ctx, depth);
	/* A verify store of its own: the context's chain store (server chain building) stays
	 * empty, so a client CA is never sent as part of the server's chain. */
	SSL_CTX_set0_verify_cert_store(ctx, store);
	store = NULL;
	SSL_CTX_set_client_CA_list(ctx, names);
	names = NULL;
	SSL_CTX_set_verify(ctx,
			   mode == MTLS_MODE_REQUIRED
			       ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
			       : SSL_VERIFY_PEER,
			   NULL);
	ret = 0;
cleanup:
	if (ret == -ENOMEM)
		errmsg_set(err, errlen, "%s: out of memory", ca_file);
	X509_STORE_free(store);
	sk_X509_NAME_pop_free(names, X509_NAME_free);
	sk_X509_pop_free(cas, X509_free);
	BIO_free(ca_bio);
	BIO_free(crl_bio);
	return ret;
}

const char *mtls_verify_reason(SSL *ssl)
{
	long r = SSL_get_verify_result(ssl);

	if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		return "not requested";
	if (r != X509_V_OK)
		return X509_verify_cert_error_string(r);
	if (!SSL_get0_peer_certificate(ssl))
		return "no client certificate";
	return "ok";
}

static X509 *verified_peer(SSL *ssl, char *buf, size_t len, int *ret)
{
	X509 *x = SSL_get0_peer_certificate(ssl);

	if (len)
		buf[0] = '\0';
	*ret = 0;
	if (!x)
		*ret = -ENOENT;
	else if (SSL_get_verify_result(ssl) != X509_V_OK)
		*ret = -EPERM;
	return *ret ? NULL : x;
}

int mtls_peer_subject(SSL *ssl, char *buf, size_t len)
{
	X509 *x;
	BIO *b;
	char *p = NULL;
	long l;
	int ret;

	x = verified_peer(ssl, buf, len, &ret);
	if (!x)
		return ret;
	b = BIO_new(BIO_s_mem());
	if (!b)
		return -ENOMEM;
	ret = -ENOMEM;
	if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
		l = BIO_get_mem_data(b, &p);
		if (l < 0 || !p)
			l = 0;
		ret = (size_t)l < len ? 0 : -ENOSPC;
		if (len)
			snprintf(buf, len, "%.*s", (int)l, p ? p : "");
	}
	BIO_free(b);
	ERR_clear_error();
	return ret;
}

int mtls_peer_cn(SSL *ssl, char *buf, size_t len)
{
	const X509_NAME *subj;
	unsigned char *cn = NULL;
	X509 *x;
	int i = -1, last = -1, l, ret;

	x = verified_peer(ssl, buf, len, &ret);
	if (!x)
		return ret;
	subj = X509_get_subject_name(x);
	while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0)
		last = i;
	if (last < 0)
		return -ENOENT;
	l = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
	if (l < 0) {
		ERR_clear_error();
		return -EINVAL;
	}
	ret = (size_t)l < len ? 0 : -ENOSPC;
	for (int k = 0; len && (size_t)k < len - 1 && k < l; k++) {
		buf[k] = (cn[k] < 0x20 || cn[k] == 0x7f) ? '?' : (char)cn[k];
		buf[k + 1] = '\0';
	}
	OPENSSL_free(cn);
	return ret;
}
