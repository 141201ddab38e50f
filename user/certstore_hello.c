/* certstore_hello.c — what a ClientHello allows, read inside OpenSSL's ClientHello callback, and
 * the callback body that selects and installs the certificate.
 *
 * OpenSSL has parsed the message; this reads it through SSL_client_hello_get0_* and decodes only
 * the bodies of four extensions (server_name, supported_versions, signature_algorithms,
 * supported_groups), bounds-checked. It predicts what OpenSSL's own server code will accept
 * later in the same handshake, with the listener's settings on the SSL:
 *   - the version: the highest the client offers (supported_versions, else legacy_version and
 *     below) that the SSL allows (min/max, SSL_OP_NO_*, security level);
 *   - TLS 1.3: RSA needs rsa_pss_rsae_*, ECDSA needs ecdsa_secpNNNr1_shaNNN for the certificate's
 *     curve (PKCS#1 and rsa_pss_pss_* cannot sign with an rsaEncryption key in TLS 1.3);
 *   - TLS ≤1.2: the client must offer a cipher of the SSL's list, valid at that version, with
 *     ECDHE/DHE/RSA key exchange and the key type's authentication; in TLS 1.2 its
 *     signature_algorithms, when sent, must hold a scheme for the key type (OpenSSL requires that
 *     even for RSA key exchange) and its supported_groups, when sent, the certificate's curve;
 *   - a signature scheme counts only if the SSL's security level allows its hash (SHA-1 needs
 *     level 0, SHA-224 at most 2, ...), as OpenSSL 3.0 does.
 * Not modelled, because OpenSSL then fails the handshake whatever certificate is chosen: no
 * shared TLS 1.3 suite or ECDHE group, a TLS 1.3 ClientHello without signature_algorithms.
 * signature_algorithms_cert (how the issuer signed) is not looked at: the rules are about the
 * certificate's key type. */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>

#include "certstore_int.h"
#include "sni.h"
#include "tls_wire.h"

/* Where a signature scheme can sign with our key; secbits as OpenSSL 3.0's sigalg_security_bits
 * computes them (half the digest size, SHA-1 lowered to 64). */
enum { SA_RSA12 = 1, SA_ECDSA12 = 2, SA_RSA13 = 4 };

static const struct sigalg {
	uint16_t id;
	uint8_t use;
	uint8_t curve13; /* CERTSTORE_CURVE_* an ECDSA scheme binds in TLS 1.3 */
	uint16_t secbits;
} sigalgs[] = {
	{ 0x0201, SA_RSA12, 0, 64 },			   /* rsa_pkcs1_sha1 */
	{ 0x0301, SA_RSA12, 0, 112 },			   /* rsa_pkcs1_sha224 */
	{ 0x0401, SA_RSA12, 0, 128 },			   /* rsa_pkcs1_sha256 */
	{ 0x0501, SA_RSA12, 0, 192 },			   /* rsa_pkcs1_sha384 */
	{ 0x0601, SA_RSA12, 0, 256 },			   /* rsa_pkcs1_sha512 */
	{ 0x0804, SA_RSA12 | SA_RSA13, 0, 128 },	   /* rsa_pss_rsae_sha256 */
	{ 0x0805, SA_RSA12 | SA_RSA13, 0, 192 },	   /* rsa_pss_rsae_sha384 */
	{ 0x0806, SA_RSA12 | SA_RSA13, 0, 256 },	   /* rsa_pss_rsae_sha512 */
	{ 0x0203, SA_ECDSA12, 0, 64 },			   /* ecdsa_sha1 */
	{ 0x0303, SA_ECDSA12, 0, 112 },			   /* ecdsa_sha224 */
	{ 0x0403, SA_ECDSA12, CERTSTORE_CURVE_P256, 128 }, /* ecdsa_secp256r1_sha256 */
	{ 0x0503, SA_ECDSA12, CERTSTORE_CURVE_P384, 192 }, /* ecdsa_secp384r1_sha384 */
	{ 0x0603, SA_ECDSA12, CERTSTORE_CURVE_P521, 256 }, /* ecdsa_secp521r1_sha512 */
};

static const struct {
	uint16_t group;
	unsigned int curve;
} groups[] = {
	{ 23, CERTSTORE_CURVE_P256 },
	{ 24, CERTSTORE_CURVE_P384 },
	{ 25, CERTSTORE_CURVE_P521 },
};

static const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION, TLS1_1_VERSION, TLS1_VERSION };

static unsigned int get16(const unsigned char *p)
{
	return (unsigned int)p[0] << 8 | p[1];
}

/* A u16-length-prefixed list of u16 values filling the whole body; false if malformed. */
static bool u16_list(const unsigned char *p, size_t len, const unsigned char **items, size_t *n)
{
	if (len < 2 || get16(p) != len - 2 || (len - 2) % 2)
		return false;
	*items = p + 2;
	*n = (len - 2) / 2;
	return true;
}

/* server_name: sni_server_name(), the parser tls-passthrough uses. Anything malformed or not a
 * usable DNS name selects like no SNI, which is what it would match (OpenSSL refuses a
 * malformed extension itself). */
static void parse_sni(const unsigned char *p, size_t len, struct certstore_hello *h)
{
	bool invalid;

	h->has_sni = sni_server_name(p, len, h->sni, sizeof(h->sni), &invalid) == 1;
}

static int min_secbits(int level)
{
	static const int bits[] = { 0, 80, 112, 128, 192, 256 };

	if (level < 0)
		level = 0;
	return bits[level > 5 ? 5 : level];
}

static bool server_allows(SSL *ssl, int v)
{
	long min = SSL_get_min_proto_version(ssl), max = SSL_get_max_proto_version(ssl);
	uint64_t opts = SSL_get_options(ssl);
	int level = SSL_get_security_level(ssl);
	uint64_t off;

	if ((min && v < min) || (max && v > max))
		return false;
	switch (v) {
	case TLS1_3_VERSION:
		off = SSL_OP_NO_TLSv1_3;
		break;
	case TLS1_2_VERSION:
		off = SSL_OP_NO_TLSv1_2;
		break;
	case TLS1_1_VERSION:
		off = SSL_OP_NO_TLSv1_1;
		break;
	default:
		off = SSL_OP_NO_TLSv1;
		break;
	}
	if (opts & off)
		return false;
	/* OpenSSL's default security callback: no TLS 1.0 from level 3, no 1.1 from level 4. */
	return !((v <= TLS1_VERSION && level >= 3) || (v <= TLS1_1_VERSION && level >= 4));
}

static int choose_version(SSL *ssl)
{
	const unsigned char *ext, *list = NULL;
	unsigned int legacy = SSL_client_hello_get0_legacy_version(ssl);
	size_t len, n = 0;
	bool has_sv = false;

	if (SSL_client_hello_get0_ext(ssl, TLS_EXT_SUPPORTED_VERSIONS, &ext, &len) == 1 &&
	    len >= 1 && ext[0] == len - 1 && ext[0] % 2 == 0) {
		has_sv = true;
		list = ext + 1;
		n = ext[0] / 2;
	}
	for (size_t k = 0; k < sizeof(versions) / sizeof(versions[0]); k++) {
		int v = versions[k];
		bool offered = false;

		if (has_sv) {
			for (size_t i = 0; i < n && !offered; i++)
				offered = (int)get16(list + 2 * i) == v;
		} else {
			offered = v != TLS1_3_VERSION && (int)legacy >= v;
		}
		if (offered && server_allows(ssl, v))
			return v;
	}
	return 0;
}

/* The key types the client's signature_algorithms allow at version v. */
static void scan_sigalgs(SSL *ssl, int v, bool *rsa, unsigned int *curves, bool *any_ecdsa)
{
	int minbits = min_secbits(SSL_get_security_level(ssl));
	const unsigned char *ext, *items;
	size_t len, n;

	*rsa = false;
	*curves = 0;
	*any_ecdsa = false;
	if (SSL_client_hello_get0_ext(ssl, TLS_EXT_SIGNATURE_ALGORITHMS, &ext, &len) != 1 ||
	    !u16_list(ext, len, &items, &n)) {
		/* TLS 1.2 without the extension: RFC 5246's defaults; TLS 1.3 without it is
		 * refused by OpenSSL (missing_extension) whatever we choose. */
		*rsa = *any_ecdsa = true;
		*curves = CERTSTORE_CURVE_ALL;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned int id = get16(items + 2 * i);

		for (size_t k = 0; k < sizeof(sigalgs) / sizeof(sigalgs[0]); k++) {
			const struct sigalg *s = &sigalgs[k];

			if (s->id != id || s->secbits < minbits)
				continue;
			if (v == TLS1_3_VERSION) {
				*rsa |= (s->use & SA_RSA13) != 0;
				*curves |= s->curve13;
			} else {
				*rsa |= (s->use & SA_RSA12) != 0;
				*any_ecdsa |= (s->use & SA_ECDSA12) != 0;
			}
		}
	}
	if (v == TLS1_3_VERSION)
		*any_ecdsa = *curves != 0;
	else
		*curves = CERTSTORE_CURVE_ALL;
}

/* TLS ≤1.2: the curves the client's supported_groups allow for the certificate. */
static unsigned int scan_groups(SSL *ssl)
{
	const unsigned char *ext, *items;
	unsigned int curves = 0;
	size_t len, n;

	if (SSL_client_hello_get0_ext(ssl, TLS_EXT_SUPPORTED_GROUPS, &ext, &len) != 1 ||
	    !u16_list(ext, len, &items, &n))
		return CERTSTORE_CURVE_ALL; /* RFC 8422: absent means any */
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < sizeof(groups) / sizeof(groups[0]); k++)
			if (get16(items + 2 * i) == groups[k].group)
				curves |= groups[k].curve;
	return curves;
}

static int cipher_min_version(const SSL_CIPHER *c)
{
	const char *v = SSL_CIPHER_get_version(c);

	if (strcmp(v, "TLSv1.3") == 0)
		return TLS1_3_VERSION;
	if (strcmp(v, "TLSv1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(v, "TLSv1.1") == 0)
		return TLS1_1_VERSION;
	return TLS1_VERSION; /* "TLSv1.0", "SSLv3" */
}

static bool in_server_list(STACK_OF(SSL_CIPHER) *list, const SSL_CIPHER *c)
{
	uint32_t id = SSL_CIPHER_get_id(c);

	for (int i = 0; i < sk_SSL_CIPHER_num(list); i++)
		if (SSL_CIPHER_get_id(sk_SSL_CIPHER_value(list, i)) == id)
			return true;
	return false;
}

/* TLS ≤1.2: does the client offer a cipher of the SSL's list, usable at v, for each key type? */
static void scan_ciphers(SSL *ssl, int v, bool *rsa, bool *ecdsa)
{
	STACK_OF(SSL_CIPHER) *mine = SSL_get_ciphers(ssl);
	const unsigned char *p;
	size_t len = SSL_client_hello_get0_ciphers(ssl, &p);
	size_t step = SSL_client_hello_isv2(ssl) ? 3 : 2;

	*rsa = *ecdsa = false;
	for (size_t i = 0; i + step <= len; i += step) {
		const unsigned char *id = p + i;
		const SSL_CIPHER *c;
		int kx, auth;

		if (step == 3) { /* SSLv2-format entries: TLS ciphers are 0x00 followed by theirs */
			if (id[0] != 0)
				continue;
			id++;
		}
		c = SSL_CIPHER_find(ssl, id);
		if (!c || !in_server_list(mine, c) || cipher_min_version(c) > v)
			continue;
		kx = SSL_CIPHER_get_kx_nid(c);
		if (kx != NID_kx_ecdhe && kx != NID_kx_dhe && kx != NID_kx_rsa)
			continue;
		auth = SSL_CIPHER_get_auth_nid(c);
		*rsa |= auth == NID_auth_rsa;
		*ecdsa |= auth == NID_auth_ecdsa;
	}
}

int certstore_hello_from_ssl(SSL *ssl, struct certstore_hello *h)
{
	const unsigned char *ext;
	bool rsa_sig, ecdsa_sig, rsa_cipher, ecdsa_cipher;
	unsigned int curves;
	size_t len;
	int v;

	memset(h, 0, sizeof(*h));
	if (!ssl || !SSL_client_hello_get0_ciphers(ssl, &ext))
		return -EINVAL; /* not inside a ClientHello callback */
	if (SSL_client_hello_get0_ext(ssl, TLS_EXT_SERVER_NAME, &ext, &len) == 1)
		parse_sni(ext, len, h);
	v = choose_version(ssl);
	h->version = (uint16_t)v;
	if (v == 0) {
		/* No version in common: OpenSSL sends protocol_version; do not pre-empt it. */
		h->rsa_ok = h->ecdsa_ok = true;
		return 0;
	}
	scan_sigalgs(ssl, v, &rsa_sig, &curves, &ecdsa_sig);
	if (v == TLS1_3_VERSION) {
		h->rsa_ok = rsa_sig;
		h->ecdsa_ok = ecdsa_sig;
	} else {
		if (v < TLS1_2_VERSION) /* signature_algorithms is a TLS 1.2 extension */
			rsa_sig = ecdsa_sig = true;
		scan_ciphers(ssl, v, &rsa_cipher, &ecdsa_cipher);
		curves = scan_groups(ssl);
		h->rsa_ok = rsa_cipher && rsa_sig;
		h->ecdsa_ok = ecdsa_cipher && ecdsa_sig && curves != 0;
	}
	h->ecdsa_curves_bad = h->ecdsa_ok ? CERTSTORE_CURVE_ALL & ~curves : 0;
	return 0;
}

int certstore_on_client_hello_ex(SSL *ssl, struct certstore_cert *const *certs, size_t n, int *al,
				 int *chosen, struct certstore_hello *hello,
				 enum certstore_match *how)
{
	struct certstore_hello h;
	int idx = -1;

	if (chosen)
		*chosen = -1;
	if (certstore_hello_from_ssl(ssl, &h) < 0) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (hello)
		*hello = h;
	idx = certstore_select_ex(certs, n, &h, how);
	if (idx < 0) {
		*al = SSL_AD_HANDSHAKE_FAILURE;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (certstore_apply(ssl, certs[idx]) < 0) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (chosen)
		*chosen = idx;
	return SSL_CLIENT_HELLO_SUCCESS;
}

int certstore_on_client_hello(SSL *ssl, struct certstore_cert *const *certs, size_t n, int *al,
			      int *chosen)
{
	return certstore_on_client_hello_ex(ssl, certs, n, al, chosen, NULL, NULL);
}
