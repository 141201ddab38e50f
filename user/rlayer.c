/* rlayer — record framing and AEAD protection, following RFC 8446 §5.2-5.3 (TLS 1.3), RFC 5246
 * §6.2.3.3 with RFC 5288 §3 (TLS 1.2 AES-GCM) and RFC 7905 §2 (ChaCha20-Poly1305).
 *
 *   TLS 1.3   header 23 03 03 len | AEAD(plaintext || type || zeros) | tag
 *             nonce = iv XOR seq (in its last 8 bytes), AAD = the header
 *   TLS 1.2   header type 03 03 len | [GCM: 8-byte explicit nonce] | AEAD(plaintext) | tag
 *             GCM nonce = 4-byte salt || explicit nonce; ChaCha20 nonce = iv XOR seq
 *             AAD = seq || type || 03 03 || plaintext length
 *
 * Our TLS 1.2 GCM explicit nonces continue OpenSSL's (the handoff passes the last one it wrote,
 * ktls_keys_follow_tls12_nonce), or start at the sequence number when OpenSSL wrote none. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "rlayer.h"
#include "tls_wire.h"

struct rl_dir {
	struct ktls_dir k;
	uint64_t seq;			 /* of the next record */
	EVP_CIPHER_CTX *ctx;		 /* keyed with k.key; NULL until used, or while idle */
	uint8_t secret[KTLS_SECRET_MAX]; /* TLS 1.3: the current traffic secret */
};

struct rlayer {
	struct rl_dir tx, rx;
	uint16_t version;
	uint8_t cipher; /* enum ktls_cipher */
	uint8_t secret_len;
	bool nonce_set; /* TLS 1.2 GCM: tx_nonce continues OpenSSL's explicit nonces */
	uint64_t tx_nonce;
};

static EVP_CIPHER *evp[KTLS_CHACHA20_POLY1305 + 1];
static pthread_once_t evp_once = PTHREAD_ONCE_INIT;

/* Fetched once: a fetch per context would look the provider up on every connection. */
static void evp_init(void)
{
	evp[KTLS_AES_GCM_128] = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	evp[KTLS_AES_GCM_256] = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	evp[KTLS_CHACHA20_POLY1305] = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

bool rlayer_supported(enum ktls_cipher c, uint16_t version)
{
	if (version != TLS1_2_VERSION && version != TLS1_3_VERSION)
		return false;
	if (c != KTLS_AES_GCM_128 && c != KTLS_AES_GCM_256 && c != KTLS_CHACHA20_POLY1305)
		return false;
	pthread_once(&evp_once, evp_init);
	return evp[c] != NULL;
}

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

struct rlayer *rlayer_new(const struct ktls_keys *k, const struct ktls_seq *seq,
			  const uint8_t *tx_secret, const uint8_t *rx_secret, size_t secret_len)
{
	struct rlayer *rl;

	if (!rlayer_supported(k->cipher, k->version) || secret_len > KTLS_SECRET_MAX ||
	    (k->version == TLS1_3_VERSION && secret_len != 32 && secret_len != 48))
		return NULL;
	rl = OPENSSL_zalloc(sizeof(*rl));
	if (!rl)
		return NULL;
	rl->version = k->version;
	rl->cipher = (uint8_t)k->cipher;
	rl->tx.k = k->tx;
	rl->rx.k = k->rx;
	rl->tx.seq = seq->tx;
	rl->rx.seq = seq->rx;
	if (k->version == TLS1_3_VERSION) {
		rl->secret_len = (uint8_t)secret_len;
		memcpy(rl->tx.secret, tx_secret, secret_len);
		memcpy(rl->rx.secret, rx_secret, secret_len);
	}
	if (k->version == TLS1_2_VERSION && k->tls12_nonce_set) {
		rl->nonce_set = true;
		rl->tx_nonce = get_be64(k->tls12_tx_nonce);
	}
	return rl;
}

void rlayer_idle(struct rlayer *rl)
{
	if (!rl)
		return;
	EVP_CIPHER_CTX_free(rl->tx.ctx); /* cleanses the key schedule */
	EVP_CIPHER_CTX_free(rl->rx.ctx);
	rl->tx.ctx = rl->rx.ctx = NULL;
}

void rlayer_free(struct rlayer *rl)
{
	if (!rl)
		return;
	rlayer_idle(rl);
	OPENSSL_clear_free(rl, sizeof(*rl));
}

uint16_t rlayer_version(const struct rlayer *rl)
{
	return rl->version;
}

/* The direction's cipher context, keyed; the nonce is set per record. */
static EVP_CIPHER_CTX *dir_ctx(const struct rlayer *rl, struct rl_dir *d, bool enc)
{
	if (d->ctx)
		return d->ctx;
	d->ctx = EVP_CIPHER_CTX_new();
	if (d->ctx && EVP_CipherInit_ex2(d->ctx, evp[rl->cipher], d->k.key, NULL, enc, NULL) != 1) {
		EVP_CIPHER_CTX_free(d->ctx);
		d->ctx = NULL;
	}
	return d->ctx;
}

/* The per-record nonce of every suite but TLS 1.2 GCM: the IV with the sequence number XORed
 * into its last 8 bytes. */
static void xor_nonce(const struct rl_dir *d, uint8_t nonce[KTLS_IV_LEN])
{
	uint8_t s[8];

	be64(s, d->seq);
	memcpy(nonce, d->k.iv, KTLS_IV_LEN);
	for (int i = 0; i < 8; i++)
		nonce[KTLS_IV_LEN - 8 + i] ^= s[i];
}

static bool tls12_gcm(const struct rlayer *rl)
{
	return rl->version == TLS1_2_VERSION && rl->cipher != KTLS_CHACHA20_POLY1305;
}

/* TLS 1.2 additional data: seq_num || type || version || length (RFC 5246 §6.2.3.3). */
static void tls12_aad(uint8_t aad[13], uint64_t seq, uint8_t type, size_t len)
{
	be64(aad, seq);
	aad[8] = type;
	aad[9] = TLS_PROTOCOL_MAJOR;
	aad[10] = TLS_PROTOCOL_MINOR_12;
	aad[11] = (uint8_t)(len >> 8);
	aad[12] = (uint8_t)len;
}

/* Starts one record's AEAD on ctx (enc: sealing): the nonce (TLS 1.2 GCM: salt || explicit, the
 * 8 bytes after the header; the others: iv XOR seq) and the additional data (TLS 1.3: the header
 * hdr; TLS 1.2: seq, type, version, plaintext length len). */
static int record_begin(const struct rlayer *rl, const struct rl_dir *d, EVP_CIPHER_CTX *ctx,
			int enc, const uint8_t *hdr, const uint8_t *explicit, uint8_t type,
			size_t len)
{
	uint8_t nonce[KTLS_IV_LEN], aad[13];
	int outl, ret = 0;

	if (tls12_gcm(rl)) {
		memcpy(nonce, d->k.iv, 4);
		memcpy(nonce + 4, explicit, TLS_EXPLICIT_NONCE);
	} else {
		xor_nonce(d, nonce);
	}
	GUARD_OSSL(EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, enc, NULL));
	if (rl->version == TLS1_3_VERSION) {
		GUARD_OSSL(EVP_CipherUpdate(ctx, NULL, &outl, hdr, TLS_RECORD_HEADER));
	} else {
		tls12_aad(aad, d->seq, type, len);
		GUARD_OSSL(EVP_CipherUpdate(ctx, NULL, &outl, aad, sizeof(aad)));
	}
cleanup:
	OPENSSL_cleanse(nonce, sizeof(nonce));
	return ret;
}

int rlayer_seal(struct rlayer *rl, uint8_t type, const uint8_t *in, size_t n, uint8_t *out,
		size_t room)
{
	struct rl_dir *d = &rl->tx;
	bool v13 = rl->version == TLS1_3_VERSION, gcm12 = tls12_gcm(rl);
	size_t body = n + (v13 ? 1 : 0) + TLS_AEAD_TAG + (gcm12 ? TLS_EXPLICIT_NONCE : 0);
	uint8_t *p = out + TLS_RECORD_HEADER;
	EVP_CIPHER_CTX *ctx;
	int outl, ret = 0;

	ENSURE(n <= TLS_MAX_PLAINTEXT, EINVAL);
	ENSURE(room >= TLS_RECORD_HEADER + body, ENOSPC);
	ENSURE(d->seq != UINT64_MAX && (!rl->nonce_set || rl->tx_nonce != UINT64_MAX), EOVERFLOW);
	ctx = dir_ctx(rl, d, true);
	ENSURE(ctx, ENOMEM);
	out[0] = v13 ? TLS_CT_APPLICATION_DATA : type;
	out[1] = TLS_PROTOCOL_MAJOR;
	out[2] = TLS_PROTOCOL_MINOR_12;
	out[3] = (uint8_t)(body >> 8);
	out[4] = (uint8_t)body;
	if (gcm12)
		be64(p, rl->nonce_set ? rl->tx_nonce : d->seq);
	GUARD(record_begin(rl, d, ctx, 1, out, p, type, n));
	if (gcm12)
		p += TLS_EXPLICIT_NONCE;
	if (n)
		GUARD_OSSL(EVP_EncryptUpdate(ctx, p, &outl, in, (int)n));
	p += n;
	if (v13) {
		GUARD_OSSL(EVP_EncryptUpdate(ctx, p, &outl, &type, 1));
		p++;
	}
	GUARD_OSSL(EVP_EncryptFinal_ex(ctx, p, &outl));
	GUARD_OSSL(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TLS_AEAD_TAG, p));
	d->seq++;
	if (rl->nonce_set)
		rl->tx_nonce++;
	ret = (int)(TLS_RECORD_HEADER + body);
cleanup:
	return ret;
}

/* TLS 1.3: the inner content type is the last non-zero byte; what follows it is padding. The
 * whole TLSInnerPlaintext, padding included, is at most 2^14 + 1 bytes (RFC 8446 §5.4). */
static int tls13_inner(const uint8_t *p, size_t n, struct rlayer_rec *rec)
{
	if (n > TLS_MAX_PLAINTEXT + 1)
		return -EMSGSIZE;
	while (n && p[n - 1] == 0)
		n--;
	if (n == 0)
		return -EPROTO; /* RFC 8446 §5.4: no non-zero octet is unexpected_message */
	if (n - 1 > TLS_MAX_PLAINTEXT)
		return -EMSGSIZE;
	rec->type = p[n - 1];
	rec->len = (uint32_t)(n - 1);
	return 0;
}

int rlayer_open(struct rlayer *rl, const uint8_t *in, size_t len, uint8_t *out, size_t room,
		struct rlayer_rec *rec)
{
	struct rl_dir *d = &rl->rx;
	bool v13 = rl->version == TLS1_3_VERSION, gcm12 = tls12_gcm(rl);
	size_t body, ct, pre = gcm12 ? TLS_EXPLICIT_NONCE : 0;
	uint8_t type;
	EVP_CIPHER_CTX *ctx;
	int outl, ret = 0;

	if (len < TLS_RECORD_HEADER)
		return 0;
	type = in[0];
	body = (size_t)in[3] << 8 | in[4];
	/* The checks and their order are OpenSSL 3.0's, so a peer gets the alert it would get from
	 * OpenSSL (docs/security.md, "Alerts"). After the handshake every TLS 1.3 record is
	 * application_data outside (RFC 8446 §5.1) with legacy_record_version 0x0303, as every TLS
	 * 1.2 record has version 0x0303. A TLS 1.2 record of a type that cannot come after the
	 * handshake (ChangeCipherSpec, an unknown one) is authenticated first: unexpected_message
	 * only for a record the peer really sent. */
	ENSURE(in[1] == TLS_PROTOCOL_MAJOR && in[2] == TLS_PROTOCOL_MINOR_12, EPROTONOSUPPORT);
	ENSURE(!v13 || type == TLS_CT_APPLICATION_DATA, EPROTO);
	ENSURE(body <= TLS_MAX_PLAINTEXT + (v13 ? TLS_MAX_EXPANSION_13 : TLS_MAX_EXPANSION_12),
	       EMSGSIZE);
	if (len < TLS_RECORD_HEADER + body)
		return 0;
	ENSURE(body >= pre + TLS_AEAD_TAG + (v13 ? 1 : 0), EBADMSG);
	ct = body - pre - TLS_AEAD_TAG;
	ENSURE(v13 || ct <= TLS_MAX_PLAINTEXT, EMSGSIZE);
	ENSURE(room >= ct, ENOSPC);
	ENSURE(d->seq != UINT64_MAX, EOVERFLOW);
	ctx = dir_ctx(rl, d, false);
	ENSURE(ctx, ENOMEM);
	GUARD(record_begin(rl, d, ctx, 0, in, in + TLS_RECORD_HEADER, type, ct));
	if (ct)
		GUARD_OSSL(
		    EVP_DecryptUpdate(ctx, out, &outl, in + TLS_RECORD_HEADER + pre, (int)ct));
	GUARD_OSSL(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TLS_AEAD_TAG,
				       (void *)(in + TLS_RECORD_HEADER + pre + ct)));
	ENSURE(EVP_DecryptFinal_ex(ctx, out + ct, &outl) == 1, EBADMSG);
	d->seq++;
	if (v13) {
		GUARD(tls13_inner(out, ct, rec));
	} else {
		ENSURE(type == TLS_CT_ALERT || type == TLS_CT_HANDSHAKE ||
			   type == TLS_CT_APPLICATION_DATA,
		       EPROTO);
		rec->type = type;
		rec->len = (uint32_t)ct;
	}
	ret = (int)(TLS_RECORD_HEADER + body);
cleanup:
	return ret;
}

int rlayer_key_update(struct rlayer *rl, bool tx)
{
	struct rl_dir *d = tx ? &rl->tx : &rl->rx;
	int ret = 0;

	ENSURE(rl->version == TLS1_3_VERSION, EOPNOTSUPP);
	GUARD(ktls_key_update((enum ktls_cipher)rl->cipher, d->secret, rl->secret_len, &d->k));
	EVP_CIPHER_CTX_free(d->ctx); /* keyed with the old key */
	d->ctx = NULL;
	d->seq = 0;
cleanup:
	return ret;
}

uint8_t rlayer_alert(const struct rlayer *rl, int err)
{
	switch (err) {
	case -EPROTONOSUPPORT: /* OpenSSL 3.0: decode_error in TLS 1.3, protocol_version before */
		return rl->version == TLS1_3_VERSION ? TLS_ALERT_DECODE_ERROR
						     : TLS_ALERT_PROTOCOL_VERSION;
	case -EBADMSG:
		return TLS_ALERT_BAD_RECORD_MAC;
	case -EMSGSIZE:
		return TLS_ALERT_RECORD_OVERFLOW;
	case -EPROTO:
		return TLS_ALERT_UNEXPECTED_MESSAGE;
	default:
		return TLS_ALERT_INTERNAL_ERROR;
	}
}
