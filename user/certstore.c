/* certstore.c — loading one server certificate: a PEM chain and an unencrypted PEM key, checked
 * as docs/configuration-certificates.md ("Server certificates") says (PEM only, no encrypted keys,
 * key matches, validity not enforced), and turned into the names and key type selection works
 * on. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "errmsg.h"
#include "certstore_int.h"

#define PEM_MAX_BYTES (16u << 20)

/* A password callback that refuses: nothing ever prompts on the terminal, and *u records that a
 * password was wanted (an encrypted key). */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	if (u)
		*(bool *)u = true;
	return -1;
}

int certstore_pem_read_file(const char *path, const char *tool, BIO **out, char *err, size_t errlen)
{
	unsigned char *data = NULL;
	size_t len = 0, cap = 0;
	struct stat st;
	FILE *f = NULL;
	BIO *bio = NULL;
	int ret = 0;

	*out = NULL;
	f = fopen(path, "re");
	if (!f || fstat(fileno(f), &st) < 0) {
		ret = -errno;
		errmsg_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		goto cleanup;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		errmsg_set(err, errlen, "%s: not a regular file", path);
		goto cleanup;
	}
	for (;;) {
		size_t got;

		if (len == cap) {
			unsigned char *n;

			if (cap >= PEM_MAX_BYTES) {
				ret = -EFBIG;
				errmsg_set(err, errlen, "%s: larger than 16 MiB", path);
				goto cleanup;
			}
			cap = cap ? cap * 2 : 16384;
			n = OPENSSL_clear_realloc(data, len, cap);
			if (!n) {
				ret = -ENOMEM;
				goto cleanup;
			}
			data = n;
		}
		got = fread(data + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		ret = -EIO;
		errmsg_set(err, errlen, "%s: read error", path);
		goto cleanup;
	}
	if (len == 0) {
		ret = -EINVAL;
		errmsg_set(err, errlen, "%s: empty file", path);
		goto cleanup;
	}
	if (!memmem(data, len, "-----BEGIN ", 11)) {
		ret = -EINVAL;
		if (data[0] == 0x30) /* an ASN.1 SEQUENCE: DER */
			errmsg_set(
			    err, errlen,
			    "%s: not a PEM file (it looks like DER; convert it with: openssl %s "
			    "-inform DER -in %s -out NEW.pem)",
			    path, tool, path);
		else
			errmsg_set(err, errlen, "%s: not a PEM file (no \"-----BEGIN\" line)",
				   path);
		goto cleanup;
	}
	/* secmem: the buffer is wiped when freed, which matters for keys. */
	bio = BIO_new(BIO_s_secmem());
	if (!bio || BIO_write(bio, data, (int)len) != (int)len) {
		ret = -ENOMEM;
		goto cleanup;
	}
	*out = bio;
	bio = NULL;
cleanup:
	BIO_free(bio);
	OPENSSL_clear_free(data, cap);
	if (f)
		fclose(f);
	return ret;
}

static bool pem_at_end(void)
{
	unsigned long e = ERR_peek_last_error();

	return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

static int read_certs(struct certstore_cert *c, const char *path, char *err, size_t errlen)
{
	char why[128];
	BIO *bio = NULL;
	X509 *x;
	int ret, n = 0;

	ret = certstore_pem_read_file(path, "x509", &bio, err, errlen);
	if (ret < 0)
		return ret;
	ERR_clear_error();
	/* PEM_read_bio_X509 skips blocks of other types (a key in a combined file). */
	while ((x = PEM_read_bio_X509(bio, NULL, no_password, NULL)) != NULL) {
		n++;
		if (!c->leaf) {
			c->leaf = x;
		} else if (!sk_X509_push(c->chain, x)) {
			X509_free(x);
			ret = -ENOMEM;
			goto cleanup;
		}
	}
	if (!pem_at_end()) {
		ret = -EINVAL;
		errmsg_set(err, errlen, "%s: certificate #%d is malformed (%s)", path, n + 1,
			   errmsg_ossl_reason(why, sizeof(why)));
		goto cleanup;
	}
	ERR_clear_error();
	if (!c->leaf) {
		ret = -EINVAL;
		errmsg_set(err, errlen,
			   "%s: no certificate found (expected a "
			   "\"-----BEGIN CERTIFICATE-----\" block)",
			   path);
	}
cleanup:
	BIO_free(bio);
	return ret;
}

static int read_key(struct certstore_cert *c, const char *path, char *err, size_t errlen)
{
	bool encrypted = false;
	BIO *bio = NULL;
	char *p = NULL;
	char why[128];
	size_t len;
	int ret;

	ret = certstore_pem_read_file(path, "pkey", &bio, err, errlen);
	if (ret < 0)
		return ret;
	len = (size_t)BIO_get_mem_data(bio, &p);
	if (memmem(p, len, "ENCRYPTED PRIVATE KEY-----", 26) ||
	    memmem(p, len, "Proc-Type: 4,ENCRYPTED", 22)) {
		encrypted = true;
	} else if (!memmem(p, len, "PRIVATE KEY-----", 16)) {
		ret = -EINVAL;
		errmsg_set(err, errlen,
			   "%s: no private key found (expected a "
			   "\"-----BEGIN PRIVATE KEY-----\" block)",
			   path);
		goto cleanup;
	} else {
		ERR_clear_error();
		/* The callback sets encrypted if a password is asked for after all. */
		c->key = PEM_read_bio_PrivateKey(bio, NULL, no_password, &encrypted);
	}
	if (encrypted) {
		ret = -ENOTSUP;
		EVP_PKEY_free(c->key);
		c->key = NULL;
		ERR_clear_error();
		errmsg_set(err, errlen,
			   "%s: private key is encrypted (only unencrypted PEM keys are supported; "
			   "decrypt it with: openssl pkey -in %s -out NEW.key)",
			   path, path);
	} else if (!c->key) {
		ret = -EINVAL;
		errmsg_set(err, errlen,
			   "%s: cannot decode the private key (malformed or unsupported: %s)", path,
			   errmsg_ossl_reason(why, sizeof(why)));
	}
cleanup:
	BIO_free(bio);
	return ret;
}

static int classify_key(struct certstore_cert *c, char *err, size_t errlen)
{
	EVP_PKEY *pub = X509_get0_pubkey(c->leaf);
	char group[64] = "";
	int id;

	if (!pub) {
		ERR_clear_error();
		errmsg_set(err, errlen, "%s: cannot decode the certificate's public key", c->path);
		return -EINVAL;
	}
	c->bits = EVP_PKEY_get_bits(pub);
	id = EVP_PKEY_get_base_id(pub);
	if (id == EVP_PKEY_RSA) {
		c->type = CERTSTORE_KEY_RSA;
		snprintf(c->key_desc, sizeof(c->key_desc), "RSA-%d", c->bits);
		return 0;
	}
	if (id != EVP_PKEY_EC) {
		const char *t = EVP_PKEY_get0_type_name(pub);

		errmsg_set(err, errlen, "%s: %s keys are not supported (use RSA or ECDSA)", c->path,
			   t ? t : "this type of");
		return -ENOTSUP;
	}
	c->type = CERTSTORE_KEY_ECDSA;
	if (!EVP_PKEY_get_group_name(pub, group, sizeof(group), NULL))
		group[0] = '\0';
	switch (OBJ_sn2nid(group)) {
	case NID_X9_62_prime256v1:
		c->curve = CERTSTORE_CURVE_P256;
		break;
	case NID_secp384r1:
		c->curve = CERTSTORE_CURVE_P384;
		break;
	case NID_secp521r1:
		c->curve = CERTSTORE_CURVE_P521;
		break;
	default:
		ERR_clear_error();
		errmsg_set(
		    err, errlen,
		    "%s: ECDSA curve %s is not supported (use P-256, P-384 or P-521: TLS 1.3 "
		    "cannot sign with others)",
		    c->path, group[0] ? group : "(unnamed)");
		return -ENOTSUP;
	}
	snprintf(c->key_desc, sizeof(c->key_desc), "ECDSA-P%d", c->bits);
	return 0;
}

static int check_key_matches(struct certstore_cert *c, const char *key_path, char *err,
			     size_t errlen)
{
	if (X509_check_private_key(c->leaf, c->key) == 1)
		return 0;
	ERR_clear_error();
	for (int i = 0; i < sk_X509_num(c->chain); i++) {
		if (X509_check_private_key(sk_X509_value(c->chain, i), c->key) == 1) {
			errmsg_set(err, errlen,
				   "%s: private key matches certificate #%d of %s, not the "
				   "first: put the server certificate first, then its "
				   "intermediates",
				   key_path, i + 2, c->path);
			return -EINVAL;
		}
		ERR_clear_error();
	}
	errmsg_set(err, errlen, "%s: private key does not match certificate %s", key_path, c->path);
	return -EINVAL;
}

static bool host_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '*';
}

/* Adds one name if it can ever equal a host name: anything else (a CN like "ACME Corp", bytes
 * outside LDH) could never match an SNI and would only clutter `ktlsctl certs`. */
static int add_name(struct certstore_cert *c, const unsigned char *s, size_t len)
{
	char buf[256], **names;

	for (size_t i = 0; i < len; i++)
		if (!host_char(s[i]))
			return 0;
	if (hostname_norm((const char *)s, len, buf, sizeof(buf)) < 0)
		return 0;
	for (size_t i = 0; i < c->n_names; i++)
		if (strcmp(c->names[i], buf) == 0)
			return 0;
	names = realloc(c->names, (c->n_names + 1) * sizeof(*names));
	if (!names)
		return -ENOMEM;
	c->names = names;
	c->names[c->n_names] = strdup(buf);
	if (!c->names[c->n_names])
		return -ENOMEM;
	c->n_names++;
	return 0;
}

static int collect_names(struct certstore_cert *c)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(c->leaf, NID_subject_alt_name, NULL, NULL);
	const X509_NAME *subj = X509_get_subject_name(c->leaf);
	unsigned char *cn = NULL;
	int ret = 0, i = -1, last = -1, len;

	for (int k = 0; k < sk_GENERAL_NAME_num(gens) && ret == 0; k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);

		if (g->type == GEN_DNS)
			ret = add_name(c, ASN1_STRING_get0_data(g->d.dNSName),
				       (size_t)ASN1_STRING_length(g->d.dNSName));
	}
	GENERAL_NAMES_free(gens);
	ERR_clear_error(); /* a missing or undecodable subjectAltName is no error here */
	if (ret < 0)
		return ret;
	/* The most specific (last) CN, as X509_check_host reads it. */
	while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0)
		last = i;
	if (last < 0)
		return 0;
	len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
	if (len > 0)
		ret = add_name(c, cn, (size_t)len);
	OPENSSL_free(cn);
	ERR_clear_error();
	return ret;
}

static time_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

static char *subject_text(const X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL, *s = NULL;
	long len;

	if (!b)
		return NULL;
	if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
		len = BIO_get_mem_data(b, &p);
		s = strndup(len > 0 ? p : "", len > 0 ? (size_t)len : 0);
	}
	BIO_free(b);
	return s;
}

int certstore_cert_load(const char *cert_path, const char *key_path, struct certstore_cert **out,
			char *err, size_t errlen)
{
	struct certstore_cert *c = calloc(1, sizeof(*c));
	int ret = -ENOMEM;

	*out = NULL;
	if (!c)
		goto cleanup;
	c->path = strdup(cert_path);
	c->chain = sk_X509_new_null();
	if (!c->path || !c->chain)
		goto cleanup;
	ret = read_certs(c, cert_path, err, errlen);
	if (ret < 0)
		goto cleanup;
	ret = classify_key(c, err, errlen);
	if (ret < 0)
		goto cleanup;
	ret = read_key(c, key_path, err, errlen);
	if (ret < 0)
		goto cleanup;
	ret = check_key_matches(c, key_path, err, errlen);
	if (ret < 0)
		goto cleanup;
	ret = -ENOMEM;
	c->subject = subject_text(c->leaf);
	if (!c->subject || collect_names(c) < 0)
		goto cleanup;
	c->not_before = asn1_time(X509_get0_notBefore(c->leaf));
	c->not_after = asn1_time(X509_get0_notAfter(c->leaf));
	*out = c;
	c = NULL;
	ret = 0;
cleanup:
	if (ret == -ENOMEM)
		errmsg_set(err, errlen, "%s: out of memory", cert_path);
	certstore_cert_free(c);
	return ret;
}

void certstore_cert_free(struct certstore_cert *c)
{
	if (!c)
		return;
	X509_free(c->leaf);
	sk_X509_pop_free(c->chain, X509_free);
	EVP_PKEY_free(c->key);
	for (size_t i = 0; i < c->n_names; i++)
		free(c->names[i]);
	free(c->names);
	free(c->subject);
	free(c->path);
	free(c);
}

int certstore_apply(SSL *ssl, const struct certstore_cert *c)
{
	if (!ssl || !c)
		return -EINVAL;
	/* Already the SSL's (from its SSL_CTX): setting it again would redo the key and security
	 * checks of SSL_use_cert_and_key on every handshake. */
	if (SSL_get_certificate(ssl) == c->leaf && SSL_get_privatekey(ssl) == c->key)
		return 0;
	/* Only this certificate: with a second key type left over from the SSL_CTX, TLS 1.2 could
	 * pick ciphers for that one instead. */
	SSL_certs_clear(ssl);
	/* The chain stack is never NULL, so OpenSSL sends exactly the file's certificates and
	 * builds no chain of its own from the context's store. */
	if (SSL_use_cert_and_key(ssl, c->leaf, c->key, c->chain, 1) != 1)
		return -EINVAL;
	return 0;
}

int certstore_apply_ctx(SSL_CTX *ctx, const struct certstore_cert *c)
{
	if (!ctx || !c)
		return -EINVAL;
	if (SSL_CTX_use_cert_and_key(ctx, c->leaf, c->key, c->chain, 1) != 1)
		return -EINVAL;
	return 0;
}

int certstore_cert_check_ctx(SSL_CTX *ctx, const struct certstore_cert *c, char *err, size_t errlen)
{
	SSL *ssl = SSL_new(ctx);
	char why[128];
	int ret = 0;

	if (!ssl) {
		ERR_clear_error();
		errmsg_set(err, errlen, "%s: out of memory", c->path);
		return -ENOMEM;
	}
	if (certstore_apply(ssl, c) < 0) {
		ret = -EINVAL;
		errmsg_set(err, errlen, "%s: refused by the listener's TLS settings (%s)", c->path,
			   errmsg_ossl_reason(why, sizeof(why)));
	}
	SSL_free(ssl);
	return ret;
}

const char *certstore_cert_key_desc(const struct certstore_cert *c)
{
	return c->key_desc;
}

time_t certstore_cert_not_before(const struct certstore_cert *c)
{
	return c->not_before;
}

time_t certstore_cert_not_after(const struct certstore_cert *c)
{
	return c->not_after;
}

bool certstore_cert_is_expired(const struct certstore_cert *c, time_t now)
{
	return now > c->not_after;
}

const char *certstore_cert_subject(const struct certstore_cert *c)
{
	return c->subject;
}

const char *certstore_cert_path(const struct certstore_cert *c)
{
	return c->path;
}

size_t certstore_cert_name_count(const struct certstore_cert *c)
{
	return c->n_names;
}

const char *certstore_cert_name(const struct certstore_cert *c, size_t i)
{
	return i < c->n_names ? c->names[i] : NULL;
}

X509 *certstore_cert_leaf(const struct certstore_cert *c)
{
	return c->leaf;
}

size_t certstore_cert_chain_len(const struct certstore_cert *c)
{
	return (size_t)sk_X509_num(c->chain);
}
