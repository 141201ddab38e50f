/* ktls_keys — secrets capture and traffic key derivation for the kernel TLS handoff.
 *
 * Capture. Each SSL gets, on first use, a struct capture in SSL ex_data (one index for the
 * process), freed and wiped by the ex_data free callback when the SSL is freed:
 *   - the keylog callback stores CLIENT_TRAFFIC_SECRET_0 and SERVER_TRAFFIC_SECRET_0 (TLS 1.3),
 *     the only keylog lines kept; TLS 1.2 needs nothing from it (the master secret and randoms
 *     are read from the SSL at derivation time);
 *   - the message callback counts record headers (SSL3_RT_HEADER: one call per record OpenSSL
 *     writes, one per record header it reads) and restarts a direction's count where that
 *     direction changes keys: after its ChangeCipherSpec record (TLS 1.2), and when OpenSSL
 *     logs the direction's application traffic secret, which it does in the same step that
 *     switches the keys (TLS 1.3). It also notices what would make the captured keys stale.
 * See ktls.c for how these counts become rec_seq. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "ktls.h"

#define SECRET_MAX KTLS_SECRET_MAX

enum capture_flag {
	CAP_CLIENT_SECRET = 1 << 0, /* client application traffic secret 0 captured */
	CAP_SERVER_SECRET = 1 << 1,
	CAP_TX_EPOCH = 1 << 2, /* tx counts from the current write keys' first record */
	CAP_RX_EPOCH = 1 << 3,
	CAP_STALE = 1 << 4, /* keys changed again: KeyUpdate, renegotiation */
};

struct capture {
	uint8_t client_secret[SECRET_MAX];
	uint8_t server_secret[SECRET_MAX];
	uint8_t client_len, server_len;
	uint8_t flags;
	uint64_t tx, rx;
};

static int capture_idx = -1;
static pthread_once_t capture_once = PTHREAD_ONCE_INIT;

static void capture_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			 void *argp)
{
	OPENSSL_clear_free(ptr, sizeof(struct capture));
}

/* SSL_dup must not share the pointer (it would be freed twice): the copy starts empty. */
static int capture_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
		       long argl, void *argp)
{
	*from_d = NULL;
	return 1;
}

static void capture_index_init(void)
{
	capture_idx = SSL_get_ex_new_index(0, NULL, NULL, capture_dup, capture_free);
}

/* The SSL's capture, created on first use. NULL if that allocation fails: the counts would then
 * miss records, so the epoch flags stay unset and ktls_capture_seq refuses. */
static struct capture *capture_get(SSL *ssl)
{
	struct capture *c = SSL_get_ex_data(ssl, capture_idx);

	if (c)
		return c;
	c = OPENSSL_zalloc(sizeof(*c));
	if (c && !SSL_set_ex_data(ssl, capture_idx, c)) {
		OPENSSL_free(c);
		c = NULL;
	}
	return c;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes the hex field at s (ending at NUL, space or newline) into out; returns its length in
 * bytes, or 0 if it is not hex or longer than max. */
static size_t unhex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;

	for (; *s && *s != ' ' && *s != '\n'; s += 2) {
		int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);

		if (lo < 0 || n == max)
			return 0;
		out[n++] = (uint8_t)(hi << 4 | lo);
	}
	return n;
}

/* "LABEL <client random hex> <secret hex>" (the NSS key log format). */
static void capture_keylog(const SSL *cssl, const char *line)
{
	static const char client_label[] = "CLIENT_TRAFFIC_SECRET_0 ";
	static const char server_label[] = "SERVER_TRAFFIC_SECRET_0 ";
	SSL *ssl = (SSL *)cssl;
	bool client = strncmp(line, client_label, sizeof(client_label) - 1) == 0;
	bool server = strncmp(line, server_label, sizeof(server_label) - 1) == 0;
	struct capture *c;
	const char *hex;
	size_t n;

	if (!client && !server)
		return;
	c = capture_get(ssl);
	hex = strchr(line + sizeof(client_label) - 1, ' ');
	if (!c || !hex)
		return;
	if (client)
		n = c->client_len = (uint8_t)unhex(hex + 1, c->client_secret, SECRET_MAX);
	else
		n = c->server_len = (uint8_t)unhex(hex + 1, c->server_secret, SECRET_MAX);
	if (n == 0)
		return;
	c->flags |= client ? CAP_CLIENT_SECRET : CAP_SERVER_SECRET;
	/* OpenSSL logs a direction's application secret as it switches that direction's keys:
	 * records counted from here on are under the new keys. */
	if (client == !SSL_is_server(ssl)) {
		c->tx = 0;
		c->flags |= CAP_TX_EPOCH;
	} else {
		c->rx = 0;
		c->flags |= CAP_RX_EPOCH;
	}
}

static void capture_msg(int write_p, int version, int content_type, const void *buf, size_t len,
			SSL *ssl, void *arg)
{
	struct capture *c = capture_get(ssl);
	const uint8_t *p = buf;

	if (!c)
		return;
	switch (content_type) {
	case SSL3_RT_HEADER: /* a record written, or a record header read; p[0] is its type */
		if (len < SSL3_RT_HEADER_LENGTH)
			break;
		if (p[0] == SSL3_RT_CHANGE_CIPHER_SPEC) {
			/* TLS 1.2: the records after it are under the new keys (OpenSSL 3.0
			 * reports a CCS it reads only through this header). TLS 1.3
			 * middlebox-compatibility CCS come before the application keys, whose
			 * keylog line restarts the count again. */
			if (write_p) {
				c->tx = 0;
				c->flags |= CAP_TX_EPOCH;
			} else {
				c->rx = 0;
				c->flags |= CAP_RX_EPOCH;
			}
		} else if (write_p) {
			c->tx++;
		} else {
			c->rx++;
		}
		break;
	case SSL3_RT_HANDSHAKE:
		if (len == 0)
			break;
		if (SSL_version(ssl) == TLS1_3_VERSION ? p[0] == SSL3_MT_KEY_UPDATE
						       : SSL_is_init_finished(ssl))
			c->flags |= CAP_STALE;
		break;
	}
}

int ktls_capture_attach(SSL_CTX *ctx)
{
	SSL_CTX_keylog_cb_func cur;

	pthread_once(&capture_once, capture_index_init);
	if (capture_idx < 0)
		return -ENOMEM;
	cur = SSL_CTX_get_keylog_callback(ctx);
	if (cur && cur != capture_keylog)
		return -EBUSY;
	SSL_CTX_set_keylog_callback(ctx, capture_keylog);
	SSL_CTX_set_msg_callback(ctx, capture_msg);
	return 0;
}

static struct capture *capture_find(SSL *ssl)
{
	return capture_idx < 0 ? NULL : SSL_get_ex_data(ssl, capture_idx);
}

int ktls_capture_seq(SSL *ssl, struct ktls_seq *out)
{
	struct capture *c = capture_find(ssl);
	int ret = 0;

	ENSURE(c && SSL_is_init_finished(ssl), ENOKEY);
	ENSURE(!(c->flags & CAP_STALE), ESTALE);
	ENSURE((c->flags & (CAP_TX_EPOCH | CAP_RX_EPOCH)) == (CAP_TX_EPOCH | CAP_RX_EPOCH), ENOKEY);
	ENSURE(!SSL_has_pending(ssl), EAGAIN);
	out->tx = c->tx;
	out->rx = c->rx;
cleanup:
	return ret;
}

/* ---- ciphers ---------------------------------------------------------------------------- */

static enum ktls_cipher cipher_of(const SSL_CIPHER *sc, int version)
{
	if (!sc || (version != TLS1_2_VERSION && version != TLS1_3_VERSION) ||
	    !SSL_CIPHER_is_aead(sc))
		return KTLS_CIPHER_NONE;
	switch (SSL_CIPHER_get_cipher_nid(sc)) {
	case NID_aes_128_gcm:
		return KTLS_AES_GCM_128;
	case NID_aes_256_gcm:
		return KTLS_AES_GCM_256;
	case NID_chacha20_poly1305:
		return KTLS_CHACHA20_POLY1305;
	default: /* AES-CCM among them: see ktls.h */
		return KTLS_CIPHER_NONE;
	}
}

enum ktls_cipher ktls_cipher_of(SSL *ssl)
{
	return cipher_of(SSL_get_current_cipher(ssl), SSL_version(ssl));
}

bool ktls_cipher_supported(SSL *ssl)
{
	return ktls_cipher_of(ssl) != KTLS_CIPHER_NONE;
}

const char *ktls_cipher_name(enum ktls_cipher c)
{
	switch (c) {
	case KTLS_AES_GCM_128:
		return "AES-GCM-128";
	case KTLS_AES_GCM_256:
		return "AES-GCM-256";
	case KTLS_CHACHA20_POLY1305:
		return "CHACHA20-POLY1305";
	default:
		return "none";
	}
}

size_t ktls_key_len(enum ktls_cipher c)
{
	switch (c) {
	case KTLS_AES_GCM_128:
		return 16;
	case KTLS_AES_GCM_256:
	case KTLS_CHACHA20_POLY1305:
		return 32;
	default:
		return 0;
	}
}

/* Bytes of the write IV each end keeps: RFC 8446 §5.3 (12 for every TLS 1.3 suite), RFC 5288 §3
 * (4-byte implicit part for GCM), RFC 7905 §2 (12 for ChaCha20). */
static size_t fixed_iv_len(enum ktls_cipher c, uint16_t version)
{
	if (version == TLS1_3_VERSION || c == KTLS_CHACHA20_POLY1305)
		return KTLS_IV_LEN;
	return 4;
}

/* ---- derivation ------------------------------------------------------------------------- */

static EVP_KDF *kdf_tls13, *kdf_tls12;
static pthread_once_t kdf_once = PTHREAD_ONCE_INIT;

/* Fetched once and kept for the life of the process (EVP_KDF objects may be shared). */
static void kdf_init(void)
{
	kdf_tls13 = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, NULL);
	kdf_tls12 = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, NULL);
}

/* RFC 8446 §7.1 HKDF-Expand-Label(secret, label, "", len), by OpenSSL's TLS13-KDF. */
static int tls13_expand(const char *digest, const uint8_t *secret, size_t secret_len,
			const char *label, uint8_t *out, size_t len)
{
	static const char prefix[] = "tls13 ";
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, (void *)prefix,
						  sizeof(prefix) - 1),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, (void *)label,
						  strlen(label)),
		OSSL_PARAM_construct_end(),
	};
	EVP_KDF_CTX *kctx = NULL;
	int ret = 0;

	pthread_once(&kdf_once, kdf_init);
	ENSURE(kdf_tls13, EPROTO);
	kctx = EVP_KDF_CTX_new(kdf_tls13);
	ENSURE(kctx, ENOMEM);
	GUARD_OSSL(EVP_KDF_derive(kctx, out, len, params));
cleanup:
	EVP_KDF_CTX_free(kctx); /* cleanses its copy of the secret */
	return ret;
}

static int tls13_dir(enum ktls_cipher c, const char *digest, const uint8_t *secret,
		     size_t secret_len, struct ktls_dir *d)
{
	int ret = 0;

	GUARD(tls13_expand(digest, secret, secret_len, "key", d->key, ktls_key_len(c)));
	GUARD(tls13_expand(digest, secret, secret_len, "iv", d->iv, KTLS_IV_LEN));
cleanup:
	return ret;
}

int ktls_keys_tls13(enum ktls_cipher c, const char *digest, const uint8_t *client_secret,
		    const uint8_t *server_secret, size_t secret_len, bool server,
		    struct ktls_keys *out)
{
	int ret = 0;

	memset(out, 0, sizeof(*out));
	ENSURE(ktls_key_len(c) != 0, EOPNOTSUPP);
	out->version = TLS1_3_VERSION;
	out->cipher = c;
	GUARD(tls13_dir(c, digest, server ? server_secret : client_secret, secret_len, &out->tx));
	GUARD(tls13_dir(c, digest, server ? client_secret : server_secret, secret_len, &out->rx));
cleanup:
	if (ret < 0)
		ktls_keys_wipe(out);
	return ret;
}

/* RFC 5246 §6.3: key_block = PRF(master, "key expansion", server_random + client_random), by
 * OpenSSL's TLS1-PRF. AEAD suites have no MAC keys, so it is client_write_key, server_write_key,
 * client_write_IV, server_write_IV. */
int ktls_keys_tls12(enum ktls_cipher c, const char *digest, const uint8_t *master,
		    size_t master_len, const uint8_t client_random[32],
		    const uint8_t server_random[32], bool server, struct ktls_keys *out)
{
	static const char label[] = "key expansion";
	size_t klen = ktls_key_len(c), ivlen = fixed_iv_len(c, TLS1_2_VERSION);
	uint8_t seed[sizeof(label) - 1 + 64];
	uint8_t block[2 * (KTLS_KEY_MAX + KTLS_IV_LEN)];
	const uint8_t *ckey = block, *skey = block + klen;
	const uint8_t *civ = block + 2 * klen, *siv = civ + ivlen;
	EVP_KDF_CTX *kctx = NULL;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	ENSURE(klen != 0, EOPNOTSUPP);
	memcpy(seed, label, sizeof(label) - 1);
	memcpy(seed + sizeof(label) - 1, server_random, 32);
	memcpy(seed + sizeof(label) - 1 + 32, client_random, 32);
	{
		OSSL_PARAM params[] = {
			OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)master,
							  master_len),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed)),
			OSSL_PARAM_construct_end(),
		};

		pthread_once(&kdf_once, kdf_init);
		ENSURE(kdf_tls12, EPROTO);
		kctx = EVP_KDF_CTX_new(kdf_tls12);
		ENSURE(kctx, ENOMEM);
		GUARD_OSSL(EVP_KDF_derive(kctx, block, 2 * (klen + ivlen), params));
	}
	out->version = TLS1_2_VERSION;
	out->cipher = c;
	memcpy(out->tx.key, server ? skey : ckey, klen);
	memcpy(out->rx.key, server ? ckey : skey, klen);
	memcpy(out->tx.iv, server ? siv : civ, ivlen);
	memcpy(out->rx.iv, server ? civ : siv, ivlen);
cleanup:
	EVP_KDF_CTX_free(kctx);
	OPENSSL_cleanse(block, sizeof(block));
	if (ret < 0)
		ktls_keys_wipe(out);
	return ret;
}

int ktls_derive(SSL *ssl, struct ktls_keys *out)
{
	const SSL_CIPHER *sc = SSL_get_current_cipher(ssl);
	int version = SSL_version(ssl);
	enum ktls_cipher c = cipher_of(sc, version);
	struct capture *cap = capture_find(ssl);
	uint8_t master[SSL_MAX_MASTER_KEY_LENGTH];
	uint8_t cr[SSL3_RANDOM_SIZE], sr[SSL3_RANDOM_SIZE];
	const EVP_MD *md;
	const char *digest;
	size_t mlen = 0;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	ENSURE(SSL_is_init_finished(ssl), ENOKEY);
	ENSURE(c != KTLS_CIPHER_NONE, EOPNOTSUPP);
	ENSURE(!cap || !(cap->flags & CAP_STALE), ESTALE);
	md = SSL_CIPHER_get_handshake_digest(sc); /* TLS 1.2: the PRF hash of every AEAD suite */
	digest = md ? EVP_MD_get0_name(md) : NULL;
	ENSURE(digest, EPROTO);
	if (version == TLS1_3_VERSION) {
		ENSURE(cap, ENOKEY);
		ENSURE((cap->flags & (CAP_CLIENT_SECRET | CAP_SERVER_SECRET)) ==
			   (CAP_CLIENT_SECRET | CAP_SERVER_SECRET),
		       ENOKEY);
		ENSURE(cap->client_len == cap->server_len &&
			   cap->client_len == (size_t)EVP_MD_get_size(md),
		       ENOKEY);
		GUARD(ktls_keys_tls13(c, digest, cap->client_secret, cap->server_secret,
				      cap->client_len, SSL_is_server(ssl), out));
	} else {
		mlen = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof(master));
		ENSURE(mlen > 0, ENOKEY);
		ENSURE(SSL_get_client_random(ssl, cr, sizeof(cr)) == sizeof(cr) &&
			   SSL_get_server_random(ssl, sr, sizeof(sr)) == sizeof(sr),
		       ENOKEY);
		GUARD(ktls_keys_tls12(c, digest, master, mlen, cr, sr, SSL_is_server(ssl), out));
	}
cleanup:
	OPENSSL_cleanse(master, sizeof(master));
	if (ret < 0)
		ktls_keys_wipe(out);
	return ret;
}

void ktls_keys_follow_tls12_nonce(struct ktls_keys *k, const uint8_t last_sent[8])
{
	int i;

	memcpy(k->tls12_tx_nonce, last_sent, 8);
	for (i = 7; i >= 0 && ++k->tls12_tx_nonce[i] == 0; i--)
		;
	k->tls12_nonce_set = true;
}

void ktls_keys_wipe(struct ktls_keys *k)
{
	OPENSSL_cleanse(k, sizeof(*k));
}

int ktls_traffic_secrets(SSL *ssl, uint8_t tx[KTLS_SECRET_MAX], uint8_t rx[KTLS_SECRET_MAX])
{
	struct capture *cap = capture_find(ssl);
	bool server = SSL_is_server(ssl);
	int ret = 0;

	ENSURE(cap && SSL_is_init_finished(ssl) && SSL_version(ssl) == TLS1_3_VERSION, ENOKEY);
	ENSURE(!(cap->flags & CAP_STALE), ESTALE);
	ENSURE((cap->flags & (CAP_CLIENT_SECRET | CAP_SERVER_SECRET)) ==
		       (CAP_CLIENT_SECRET | CAP_SERVER_SECRET) &&
		   cap->client_len == cap->server_len,
	       ENOKEY);
	memcpy(tx, server ? cap->server_secret : cap->client_secret, cap->client_len);
	memcpy(rx, server ? cap->client_secret : cap->server_secret, cap->client_len);
	ret = cap->client_len;
cleanup:
	return ret;
}

int ktls_key_update(enum ktls_cipher c, uint8_t *secret, size_t len, struct ktls_dir *d)
{
	const char *digest = len == 32 ? "SHA256" : len == 48 ? "SHA384" : NULL;
	uint8_t next[KTLS_SECRET_MAX];
	struct ktls_dir nd = { 0 };
	int ret = 0;

	ENSURE(digest && ktls_key_len(c) != 0, EINVAL);
	GUARD(tls13_expand(digest, secret, len, "traffic upd", next, len));
	GUARD(tls13_dir(c, digest, next, len, &nd));
	memcpy(secret, next, len);
	*d = nd;
cleanup:
	OPENSSL_cleanse(next, sizeof(next));
	OPENSSL_cleanse(&nd, sizeof(nd));
	return ret;
}

const char *ktls_session_keys(SSL *ssl, const struct record_track *tx, struct ktls_keys *keys,
			      struct ktls_seq *seq)
{
	int r = ktls_capture_seq(ssl, seq);

	if (r < 0)
		return r == -ESTALE ? "keys changed after the handshake"
				    : "record sequence unknown";
	if (ktls_derive(ssl, keys) < 0)
		return "key derivation failed";
	/* TLS 1.2 GCM: continue OpenSSL's explicit nonces rather than restart them. */
	if (keys->version == TLS1_2_VERSION && keys->cipher != KTLS_CHACHA20_POLY1305 &&
	    tx->after_ccs > 0)
		ktls_keys_follow_tls12_nonce(keys, tx->last8);
	return NULL;
}
