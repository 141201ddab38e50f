/* test_ktls — key handoff to kernel TLS, without a kernel that has it:
 *   - TLS 1.3 key/IV derivation against RFC 8448 §3 (Simple 1-RTT Handshake), then the RFC's own
 *     application data records opened and re-sealed byte for byte through the crypto_info
 *     structs ktls_install hands to setsockopt;
 *   - TLS 1.2 key blocks against NIST CAVP SP 800-135 TLS 1.2 KDF vectors (SHA-256, SHA-384);
 *   - real handshakes between two OpenSSL endpoints in this process (TLS 1.2 and 1.3 ×
 *     AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305): the server's keys and counted sequence
 *     numbers, laid out by ktls_install, must open a record the client really sent, and seal
 *     records, the way net/tls does, that the client really accepts; suites ktlsd does not
 *     offload (CBC, AES-CCM) are offered neither to kTLS nor to ktlsd's record layer;
 *   - every setsockopt failure through a fake setsockopt, and the exact crypto_info bytes.
 * The expected values are transcribed from the RFC and NIST files (found quoted in several
 * independent code bases), never computed by the code under test. The kernel's record
 * protection is re-implemented here from net/tls/tls.h and tls_sw.c, not taken from ktls.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ktls.h"
#include "rlayer.h"
#include "tls_pair_testutil.h"
#include "tls_wire.h"

static size_t unhex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;
	unsigned v;

	while (*s) {
		if (*s == ' ' || *s == '\n') {
			s++;
			continue;
		}
		assert_true(n < max);
		assert_int_equal(sscanf(s, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

/* ---- fake setsockopt ----------------------------------------------------------------------- */

struct call {
	int fd, level, opt;
	socklen_t len;
	uint8_t val[128];
};

static struct call calls[4];
static int ncalls, fail_at = -1, fail_errno;

static int fake_setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct call *c = &calls[ncalls < 4 ? ncalls : 3];

	c->fd = fd;
	c->level = level;
	c->opt = opt;
	c->len = len;
	memcpy(c->val, val, len < sizeof(c->val) ? len : sizeof(c->val));
	if (ncalls++ == fail_at) {
		errno = fail_errno;
		return -1;
	}
	return 0;
}

static const struct ktls_ops fake_ops = { .setsockopt = fake_setsockopt };

static int fake_reset(void **state)
{
	memset(calls, 0, sizeof(calls));
	ncalls = 0;
	fail_at = -1;
	fail_errno = 0;
	ktls_set_ops(&fake_ops);
	return 0;
}

static int fake_restore(void **state)
{
	ktls_set_ops(NULL);
	return 0;
}

/* Installs k through the fake and expects success: calls[1] is TX, calls[2] is RX. */
static void install_ok(const struct ktls_keys *k, uint64_t tx, uint64_t rx)
{
	struct ktls_seq seq = { .tx = tx, .rx = rx };
	enum ktls_state st;
	char why[512];

	fake_reset(NULL);
	assert_int_equal(ktls_install(7, k, &seq, 0, &st, why, sizeof(why)), 0);
	assert_int_equal(st, KTLS_STATE_TX_RX);
	assert_string_equal(why, "");
	assert_int_equal(ncalls, 3);
}

/* ---- the kernel's record protection, from net/tls ------------------------------------------ */

/* One direction as the kernel holds it after tls_set_sw_offload: iv = salt || iv. */
struct kdir {
	uint16_t version, type;
	uint8_t key[32];
	size_t key_len, salt_len, iv_len;
	uint8_t iv[12];
	uint8_t rec_seq[8];
};

#define KDIR_FROM(kd, buf, len, S)                                                                 \
	do {                                                                                       \
		struct S s_;                                                                       \
		assert_int_equal((len), sizeof(s_));                                               \
		memcpy(&s_, (buf), sizeof(s_));                                                    \
		(kd)->key_len = sizeof(s_.key);                                                    \
		(kd)->salt_len = sizeof(s_.salt);                                                  \
		(kd)->iv_len = sizeof(s_.iv);                                                      \
		memcpy((kd)->key, s_.key, sizeof(s_.key));                                         \
		memcpy((kd)->iv, s_.salt, sizeof(s_.salt));                                        \
		memcpy((kd)->iv + sizeof(s_.salt), s_.iv, sizeof(s_.iv));                          \
		memcpy((kd)->rec_seq, s_.rec_seq, 8);                                              \
	} while (0)

static void kdir_from(struct kdir *kd, const struct call *c)
{
	struct tls_crypto_info info;

	memset(kd, 0, sizeof(*kd));
	memcpy(&info, c->val, sizeof(info));
	kd->version = info.version;
	kd->type = info.cipher_type;
	switch (info.cipher_type) {
	case TLS_CIPHER_AES_GCM_128:
		KDIR_FROM(kd, c->val, c->len, tls12_crypto_info_aes_gcm_128);
		break;
	case TLS_CIPHER_AES_GCM_256:
		KDIR_FROM(kd, c->val, c->len, tls12_crypto_info_aes_gcm_256);
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
		KDIR_FROM(kd, c->val, c->len, tls12_crypto_info_chacha20_poly1305);
		break;
	default:
		fail_msg("cipher_type %u", info.cipher_type);
	}
	assert_int_equal(kd->salt_len + kd->iv_len, 12);
}

static bool kdir_xor_seq(const struct kdir *kd)
{
	return kd->version == TLS_1_3_VERSION || kd->type == TLS_CIPHER_CHACHA20_POLY1305;
}

static void be_inc(uint8_t *p, size_t n)
{
	while (n-- > 0 && ++p[n] == 0)
		;
}

/* tls_advance_record_sn */
static void kdir_advance(struct kdir *kd)
{
	be_inc(kd->rec_seq, 8);
	if (!kdir_xor_seq(kd))
		be_inc(kd->iv + kd->salt_len, kd->iv_len);
}

static bool aead(uint16_t type, bool enc, const uint8_t *key, const uint8_t nonce[12],
		 const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n, uint8_t *out,
		 uint8_t tag[16])
{
	const EVP_CIPHER *c = type == TLS_CIPHER_AES_GCM_128   ? EVP_aes_128_gcm()
			      : type == TLS_CIPHER_AES_GCM_256 ? EVP_aes_256_gcm()
							       : EVP_chacha20_poly1305();
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int l = 0, l2 = 0;
	bool ok;

	ok = ctx && EVP_CipherInit_ex(ctx, c, NULL, NULL, NULL, enc) &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) &&
	     EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) &&
	     EVP_CipherUpdate(ctx, NULL, &l, aad, (int)aad_len) &&
	     EVP_CipherUpdate(ctx, out, &l, in, (int)n) &&
	     (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag)) &&
	     EVP_CipherFinal_ex(ctx, out + l, &l2) &&
	     (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag));
	EVP_CIPHER_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

static void kdir_nonce(const struct kdir *kd, const uint8_t *explicit_nonce, uint8_t nonce[12])
{
	memcpy(nonce, kd->iv, 12);
	if (kdir_xor_seq(kd)) /* tls_xor_iv_with_seq */
		for (int i = 0; i < 8; i++)
			nonce[i + 4] ^= kd->rec_seq[i];
	else if (explicit_nonce) /* RX: from the record */
		memcpy(nonce + kd->salt_len, explicit_nonce, kd->iv_len);
}

/* TX as tls_sw_sendmsg does it (tls_fill_prepend, tls_make_aad, tls_do_encryption). */
static size_t kseal(struct kdir *kd, uint8_t type, const uint8_t *pt, size_t n, uint8_t *rec)
{
	bool tls13 = kd->version == TLS_1_3_VERSION;
	size_t explicit_len = kdir_xor_seq(kd) ? 0 : kd->iv_len;
	size_t inner = n + (tls13 ? 1 : 0), body = explicit_len + inner + 16;
	uint8_t nonce[12], aad[13], in[512];
	size_t aad_len;

	assert_true(inner <= sizeof(in));
	memcpy(in, pt, n);
	if (tls13)
		in[n] = type;
	rec[0] = tls13 ? 23 : type;
	rec[1] = 3;
	rec[2] = 3;
	rec[3] = (uint8_t)(body >> 8);
	rec[4] = (uint8_t)body;
	memcpy(rec + 5, kd->iv + kd->salt_len, explicit_len);
	kdir_nonce(kd, NULL, nonce);
	if (tls13) {
		memcpy(aad, rec, 5);
		aad_len = 5;
	} else {
		memcpy(aad, kd->rec_seq, 8);
		aad[8] = type;
		aad[9] = 3;
		aad[10] = 3;
		aad[11] = (uint8_t)(n >> 8);
		aad[12] = (uint8_t)n;
		aad_len = 13;
	}
	assert_true(aead(kd->type, true, kd->key, nonce, aad, aad_len, in, inner,
			 rec + 5 + explicit_len, rec + 5 + explicit_len + inner));
	kdir_advance(kd);
	return 5 + body;
}

/* RX as tls_rx_one_record does it (decrypt_internal, tls_padding_length). Returns the plaintext
 * length, or -1 if authentication fails. */
static int kopen(struct kdir *kd, const uint8_t *rec, size_t len, uint8_t *type, uint8_t *pt)
{
	bool tls13 = kd->version == TLS_1_3_VERSION;
	size_t explicit_len = kdir_xor_seq(kd) ? 0 : kd->iv_len;
	size_t body = (size_t)rec[3] << 8 | rec[4], ct;
	uint8_t nonce[12], aad[13], tag[16];
	size_t aad_len;

	assert_int_equal(len, 5 + body);
	assert_true(body >= explicit_len + 16);
	ct = body - explicit_len - 16;
	kdir_nonce(kd, rec + 5, nonce);
	if (tls13) {
		memcpy(aad, rec, 5);
		aad_len = 5;
	} else {
		memcpy(aad, kd->rec_seq, 8);
		memcpy(aad + 8, rec, 3);
		aad[11] = (uint8_t)(ct >> 8);
		aad[12] = (uint8_t)ct;
		aad_len = 13;
	}
	memcpy(tag, rec + 5 + explicit_len + ct, 16);
	if (!aead(kd->type, false, kd->key, nonce, aad, aad_len, rec + 5 + explicit_len, ct, pt,
		  tag))
		return -1;
	kdir_advance(kd);
	*type = rec[0];
	if (tls13) {
		while (ct > 0 && pt[ct - 1] == 0)
			ct--;
		assert_true(ct > 0);
		*type = pt[--ct];
	}
	return (int)ct;
}

/* ---- RFC 8448 §3 --------------------------------------------------------------------------- */

/* {server} derive secret "tls13 s ap traffic" / "tls13 c ap traffic", and the write key and
 * IV derived from each ("key", "iv"), TLS_AES_128_GCM_SHA256. */
static const char rfc8448_server_secret[] = "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 "
					    "82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43";
static const char rfc8448_client_secret[] = "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 "
					    "87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5";
static const char rfc8448_server_key[] = "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56";
static const char rfc8448_server_iv[] = "cf 78 2b 88 dd 83 54 9a ad f1 e9 84";
static const char rfc8448_client_key[] = "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51";
static const char rfc8448_client_iv[] = "5b 78 92 3d ee 08 57 90 33 e5 23 d9";
/* {client} send application_data record (the first under the client's application keys) and
 * {server} send application_data record (the second under the server's, after the
 * NewSessionTicket); both carry the 50 bytes 00 01 ... 31. */
static const char rfc8448_client_record[] =
    "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc "
    "ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd "
    "1e 3d ea e6 3a ee bb 21 69 49 15 e4";
static const char rfc8448_server_record[] =
    "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa "
    "1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 "
    "ab f3 32 54 0d d0 32 e1 67 c2 95 5d";

static void rfc8448_keys(bool server, struct ktls_keys *k)
{
	uint8_t cs[32], ss[32];

	assert_int_equal(unhex(rfc8448_client_secret, cs, sizeof(cs)), 32);
	assert_int_equal(unhex(rfc8448_server_secret, ss, sizeof(ss)), 32);
	assert_int_equal(ktls_keys_tls13(KTLS_AES_GCM_128, "SHA256", cs, ss, 32, server, k), 0);
}

static void expect_bytes(const uint8_t *got, const char *hex)
{
	uint8_t want[64];
	size_t n = unhex(hex, want, sizeof(want));

	assert_memory_equal(got, want, n);
}

static void test_rfc8448_keys(void **state)
{
	struct ktls_keys s, c;

	rfc8448_keys(true, &s);
	assert_int_equal(s.version, TLS1_3_VERSION);
	assert_int_equal(s.cipher, KTLS_AES_GCM_128);
	expect_bytes(s.tx.key, rfc8448_server_key);
	expect_bytes(s.tx.iv, rfc8448_server_iv);
	expect_bytes(s.rx.key, rfc8448_client_key);
	expect_bytes(s.rx.iv, rfc8448_client_iv);
	/* The client's view is the mirror image. */
	rfc8448_keys(false, &c);
	expect_bytes(c.tx.key, rfc8448_client_key);
	expect_bytes(c.tx.iv, rfc8448_client_iv);
	expect_bytes(c.rx.key, rfc8448_server_key);
	expect_bytes(c.rx.iv, rfc8448_server_iv);
	ktls_keys_wipe(&s);
	ktls_keys_wipe(&c);
}

/* Through the crypto_info structs: the server's kernel RX opens the client's record 0, and its
 * kernel TX at rec_seq 1 produces the RFC's server record exactly. */
static void test_rfc8448_records(void **state)
{
	uint8_t rec[128], out[128], pt[64], type;
	size_t rec_len;
	struct ktls_keys k;
	struct kdir tx, rx;
	int n;

	for (int i = 0; i < 50; i++)
		pt[i] = (uint8_t)i;
	rfc8448_keys(true, &k);
	install_ok(&k, 1, 0);
	kdir_from(&tx, &calls[1]);
	kdir_from(&rx, &calls[2]);

	rec_len = unhex(rfc8448_client_record, rec, sizeof(rec));
	n = kopen(&rx, rec, rec_len, &type, out);
	assert_int_equal(n, 50);
	assert_int_equal(type, 23);
	assert_memory_equal(out, pt, 50);

	rec_len = unhex(rfc8448_server_record, rec, sizeof(rec));
	assert_int_equal(kseal(&tx, 23, pt, 50, out), rec_len);
	assert_memory_equal(out, rec, rec_len);
	ktls_keys_wipe(&k);
}

/* ---- NIST CAVP SP 800-135 TLS 1.2 KDF, COUNT = 0 ------------------------------------------ */

struct nist {
	const char *digest, *master, *server_random, *client_random, *key_block;
};

static const struct nist nist_sha256 = {
	"SHA256",
	"202c88c00f84a17a20027079604787461176455539e705be730890602c289a50"
	"01e34eeb3a043e5d52a65e66125188bf",
	"ae6c806f8ad4d80784549dff28a4b58fd837681a51d928c3e30ee5ff14f39868",
	"62e1fd91f23f558a605f28478c58cf72637b89784d959df7e946d3f07bd1b616",
	"d06139889fffac1e3a71865f504aa5d0d2a2e89506c6f2279b670c3e1b74f531"
	"016a2530c51a3a0f7e1d6590d0f0566b2f387f8d11fd4f731cdd572d2eae927f"
	"6f2f81410b25e6960be68985add6c38445ad9f8c64bf8068bf9a6679485d966f"
	"1ad6f68b43495b10a683755ea2b858d70ccac7ec8b053c6bd41ca299d4e51928",
};

static const struct nist nist_sha384 = {
	"SHA384",
	"b4d49bfa87747fe815457bc3da15073d6ac73389e703079a3503c09e14bd559a"
	"5b3c7c601c7365f6ea8c68d3d9596827",
	"1b1c8568344a65c30828e7483c0e353e2c68641c9551efae6927d9cd627a107c",
	"954b5fe1849c2ede177438261f099a2fcd884d001b9fe1de754364b1f6a6dd8e",
	"10fd89ef689c7ef033387b8a8f3e5e8e7c11f680f6bdd71fbac3246a73e98d45"
	"d03185dde686e6b2369e4503e9dc5a6d2cee3e2bf2fa3f41d3de57dff3e197c8"
	"a9d5f74cc2d277119d894f8584b07a0a5822f0bd68b3433ec6adaf5c9406c5f3"
	"ddbb71bbe17ce98f3d4d5893d3179ef369f57aad908e2bf710639100c3ce7e0c",
};

/* key_block = client_write_key | server_write_key | client_write_IV | server_write_IV. */
static void check_tls12(const struct nist *v, enum ktls_cipher c, size_t klen, size_t ivlen)
{
	uint8_t master[48], sr[32], cr[32], kb[128], zero[12] = { 0 };
	struct ktls_keys s, cl;

	assert_int_equal(unhex(v->master, master, sizeof(master)), 48);
	assert_int_equal(unhex(v->server_random, sr, sizeof(sr)), 32);
	assert_int_equal(unhex(v->client_random, cr, sizeof(cr)), 32);
	assert_int_equal(unhex(v->key_block, kb, sizeof(kb)), 128);
	assert_int_equal(ktls_keys_tls12(c, v->digest, master, 48, cr, sr, true, &s), 0);
	assert_int_equal(s.version, TLS1_2_VERSION);
	assert_int_equal(s.cipher, c);
	assert_memory_equal(s.rx.key, kb, klen);
	assert_memory_equal(s.tx.key, kb + klen, klen);
	assert_memory_equal(s.rx.iv, kb + 2 * klen, ivlen);
	assert_memory_equal(s.tx.iv, kb + 2 * klen + ivlen, ivlen);
	assert_memory_equal(s.tx.iv + ivlen, zero, 12 - ivlen);
	assert_false(s.tls12_nonce_set);
	assert_int_equal(ktls_keys_tls12(c, v->digest, master, 48, cr, sr, false, &cl), 0);
	assert_memory_equal(cl.tx.key, kb, klen);
	assert_memory_equal(cl.rx.key, kb + klen, klen);
	assert_memory_equal(cl.tx.iv, kb + 2 * klen, ivlen);
	assert_memory_equal(cl.rx.iv, kb + 2 * klen + ivlen, ivlen);
	ktls_keys_wipe(&s);
	ktls_keys_wipe(&cl);
}

static void test_tls12_key_block(void **state)
{
	check_tls12(&nist_sha256, KTLS_AES_GCM_128, 16, 4);
	check_tls12(&nist_sha256, KTLS_CHACHA20_POLY1305, 32, 12);
	check_tls12(&nist_sha384, KTLS_AES_GCM_256, 32, 4);
}

static void test_derive_rejects(void **state)
{
	uint8_t s[32] = { 0 };
	struct ktls_keys k;

	assert_int_equal(ktls_keys_tls13(KTLS_CIPHER_NONE, "SHA256", s, s, 32, true, &k),
			 -EOPNOTSUPP);
	assert_int_equal(ktls_keys_tls12(KTLS_CIPHER_NONE, "SHA256", s, 32, s, s, true, &k),
			 -EOPNOTSUPP);
	assert_int_equal(ktls_keys_tls13(KTLS_AES_GCM_128, "NO-SUCH-HASH", s, s, 32, true, &k),
			 -EPROTO);
	assert_int_equal(k.cipher, KTLS_CIPHER_NONE); /* wiped */
}

static void test_cipher_names(void **state)
{
	assert_string_equal(ktls_cipher_name(KTLS_AES_GCM_128), "AES-GCM-128");
	assert_string_equal(ktls_cipher_name(KTLS_AES_GCM_256), "AES-GCM-256");
	assert_string_equal(ktls_cipher_name(KTLS_CHACHA20_POLY1305), "CHACHA20-POLY1305");
	assert_string_equal(ktls_cipher_name(KTLS_CIPHER_NONE), "none");
	assert_int_equal(ktls_key_len(KTLS_AES_GCM_256), 32);
	assert_int_equal(ktls_key_len(KTLS_CIPHER_NONE), 0);
}

/* ---- install: the crypto_info bytes and every failure ------------------------------------- */

static void synthetic_keys(struct ktls_keys *k, uint16_t version, enum ktls_cipher c)
{
	memset(k, 0, sizeof(*k));
	k->version = version;
	k->cipher = c;
	for (int i = 0; i < KTLS_KEY_MAX; i++) {
		k->tx.key[i] = (uint8_t)(0x10 + i);
		k->rx.key[i] = (uint8_t)(0x40 + i);
	}
	for (int i = 0; i < KTLS_IV_LEN; i++) {
		k->tx.iv[i] = (uint8_t)(0xa0 + i);
		k->rx.iv[i] = (uint8_t)(0xc0 + i);
	}
}

#define TX_SEQ 0x0102030405060708ull
#define RX_SEQ 0x1112131415161718ull
static const uint8_t tx_seq_be[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const uint8_t rx_seq_be[8] = { 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18 };

/* Builds the struct the kernel expects for one direction, field by field, and compares. */
#define EXPECT_INFO(S, TYPE, call, k, d, seq_be, tls12_iv)                                         \
	do {                                                                                       \
		struct S e_;                                                                       \
		memset(&e_, 0, sizeof(e_));                                                        \
		e_.info.version = (k)->version;                                                    \
		e_.info.cipher_type = TYPE;                                                        \
		memcpy(e_.key, (d)->key, sizeof(e_.key));                                          \
		memcpy(e_.rec_seq, seq_be, 8);                                                     \
		if (sizeof(e_.salt) == 0) {                                                        \
			memcpy(e_.iv, (d)->iv, sizeof(e_.iv));                                     \
		} else {                                                                           \
			memcpy(e_.salt, (d)->iv, sizeof(e_.salt));                                 \
			if ((k)->version == TLS1_3_VERSION)                                        \
				memcpy(e_.iv, (d)->iv + 4, sizeof(e_.iv));                         \
			else                                                                       \
				memcpy(e_.iv, tls12_iv, sizeof(e_.iv));                            \
		}                                                                                  \
		assert_int_equal((call)->level, SOL_TLS);                                          \
		assert_int_equal((call)->len, sizeof(e_));                                         \
		assert_memory_equal((call)->val, &e_, sizeof(e_));                                 \
	} while (0)

static void check_layout(uint16_t version, enum ktls_cipher c, bool follow)
{
	static const uint8_t last[8] = { 0, 0, 0, 0, 0, 0x12, 0xff, 0xff };
	static const uint8_t next[8] = { 0, 0, 0, 0, 0, 0x13, 0x00, 0x00 };
	struct ktls_keys k;

	synthetic_keys(&k, version, c);
	if (follow)
		ktls_keys_follow_tls12_nonce(&k, last);
	install_ok(&k, TX_SEQ, RX_SEQ);
	assert_int_equal(calls[0].fd, 7);
	assert_int_equal(calls[0].level, IPPROTO_TCP);
	assert_int_equal(calls[0].opt, TCP_ULP);
	assert_int_equal(calls[0].len, 4);
	assert_memory_equal(calls[0].val, "tls", 4);
	assert_int_equal(calls[1].opt, TLS_TX);
	assert_int_equal(calls[2].opt, TLS_RX);
	/* The first four bytes: version then cipher type, host order. */
	assert_int_equal(((const struct tls_crypto_info *)calls[1].val)->version,
			 version == TLS1_3_VERSION ? 0x0304 : 0x0303);
	switch (c) {
	case KTLS_AES_GCM_128:
		EXPECT_INFO(tls12_crypto_info_aes_gcm_128, 51, &calls[1], &k, &k.tx, tx_seq_be,
			    follow ? next : tx_seq_be);
		EXPECT_INFO(tls12_crypto_info_aes_gcm_128, 51, &calls[2], &k, &k.rx, rx_seq_be,
			    rx_seq_be);
		break;
	case KTLS_AES_GCM_256:
		EXPECT_INFO(tls12_crypto_info_aes_gcm_256, 52, &calls[1], &k, &k.tx, tx_seq_be,
			    follow ? next : tx_seq_be);
		EXPECT_INFO(tls12_crypto_info_aes_gcm_256, 52, &calls[2], &k, &k.rx, rx_seq_be,
			    rx_seq_be);
		break;
	case KTLS_CHACHA20_POLY1305:
		EXPECT_INFO(tls12_crypto_info_chacha20_poly1305, 54, &calls[1], &k, &k.tx,
			    tx_seq_be, tx_seq_be);
		EXPECT_INFO(tls12_crypto_info_chacha20_poly1305, 54, &calls[2], &k, &k.rx,
			    rx_seq_be, rx_seq_be);
		break;
	default:
		fail();
	}
}

static void test_layout(void **state)
{
	static const enum ktls_cipher all[] = { KTLS_AES_GCM_128, KTLS_AES_GCM_256,
						KTLS_CHACHA20_POLY1305 };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		check_layout(TLS1_3_VERSION, all[i], false);
		check_layout(TLS1_2_VERSION, all[i], false);
		check_layout(TLS1_2_VERSION, all[i], true);
	}
	/* Spot checks written out by hand: TLS 1.3 AES-GCM-128 TX. */
	{
		const struct tls12_crypto_info_aes_gcm_128 *g;
		struct ktls_keys k;

		synthetic_keys(&k, TLS1_3_VERSION, KTLS_AES_GCM_128);
		install_ok(&k, 1, 0);
		g = (const void *)calls[1].val;
		assert_int_equal(g->info.cipher_type, TLS_CIPHER_AES_GCM_128);
		assert_int_equal(g->salt[0], 0xa0);
		assert_int_equal(g->salt[3], 0xa3);
		assert_int_equal(g->iv[0], 0xa4);
		assert_int_equal(g->iv[7], 0xab);
		assert_int_equal(g->key[15], 0x1f);
		assert_int_equal(g->rec_seq[6], 0);
		assert_int_equal(g->rec_seq[7], 1);
	}
}

static void test_follow_nonce_wraps(void **state)
{
	static const uint8_t ff[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zero[8] = { 0 };
	struct ktls_keys k;

	synthetic_keys(&k, TLS1_2_VERSION, KTLS_AES_GCM_128);
	ktls_keys_follow_tls12_nonce(&k, ff);
	assert_true(k.tls12_nonce_set);
	assert_memory_equal(k.tls12_tx_nonce, zero, 8);
}

struct failure {
	int at, err;
	unsigned int flags;
	int calls;
	enum ktls_state state;
	const char *const words[4];
};

static void check_failure(const struct failure *f)
{
	struct ktls_seq seq = { 5, 6 };
	enum ktls_state st = KTLS_STATE_TX_RX;
	struct ktls_keys k;
	char why[512];

	synthetic_keys(&k, TLS1_3_VERSION, KTLS_AES_GCM_256);
	fake_reset(NULL);
	fail_at = f->at;
	fail_errno = f->err;
	assert_int_equal(ktls_install(9, &k, &seq, f->flags, &st, why, sizeof(why)), -f->err);
	assert_int_equal(ncalls, f->calls);
	assert_int_equal(st, f->state);
	for (int i = 0; i < 4 && f->words[i]; i++)
		if (!strstr(why, f->words[i]))
			fail_msg("\"%s\" not in \"%s\"", f->words[i], why);
}

static void test_failures(void **state)
{
	static const struct failure cases[] = {
		{ 0,
		  ENOENT,
		  0,
		  1,
		  KTLS_STATE_PLAIN,
		  { "TCP_ULP \"tls\": ENOENT", "CONFIG_TLS", "socket is unchanged", NULL } },
		{ 0,
		  ENOTCONN,
		  0,
		  1,
		  KTLS_STATE_PLAIN,
		  { "TCP_ULP \"tls\": ENOTCONN", "not an established", "can go on", NULL } },
		{ 0,
		  EEXIST,
		  0,
		  1,
		  KTLS_STATE_PLAIN,
		  { "TCP_ULP \"tls\": EEXIST", "upper-layer protocol", "can go on", NULL } },
		{ 1,
		  EINVAL,
		  0,
		  2,
		  KTLS_STATE_PLAIN,
		  { "TLS_TX: EINVAL", "sockmap", "plain TCP bytes", "userspace TLS can go on" } },
		{ 1,
		  ENOENT,
		  0,
		  2,
		  KTLS_STATE_PLAIN,
		  { "TLS_TX: ENOENT", "crypto", "userspace TLS can go on", NULL } },
		{ 1,
		  EBUSY,
		  0,
		  2,
		  KTLS_STATE_PLAIN,
		  { "TLS_TX: EBUSY", "already installed", NULL } },
		{ 1,
		  ENOPROTOOPT,
		  0,
		  2,
		  KTLS_STATE_PLAIN,
		  { "TLS_TX: ENOPROTOOPT", "ULP is not attached", NULL } },
		{ 2,
		  ENOMEM,
		  0,
		  3,
		  KTLS_STATE_TX,
		  { "TLS_RX: ENOMEM", "out of memory", "must never write", "cannot go on" } },
		{ 2,
		  EINVAL,
		  0,
		  3,
		  KTLS_STATE_TX,
		  { "TLS_RX: EINVAL", "close the connection", NULL } },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_failure(&cases[i]);
}

static void test_tx_only(void **state)
{
	struct ktls_seq seq = { 3, 4 };
	enum ktls_state st;
	struct ktls_keys k;
	char why[256];

	synthetic_keys(&k, TLS1_2_VERSION, KTLS_CHACHA20_POLY1305);
	assert_int_equal(ktls_install(9, &k, &seq, KTLS_INSTALL_TX_ONLY, &st, why, sizeof(why)), 0);
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[1].opt, TLS_TX);
	assert_int_equal(st, KTLS_STATE_TX);
}

static void test_bad_keys(void **state)
{
	struct ktls_seq seq = { 0, 0 };
	enum ktls_state st;
	struct ktls_keys k;
	char why[256];

	synthetic_keys(&k, TLS1_3_VERSION, KTLS_CIPHER_NONE);
	assert_int_equal(ktls_install(9, &k, &seq, 0, &st, why, sizeof(why)), -EINVAL);
	synthetic_keys(&k, 0x0302, KTLS_AES_GCM_128);
	assert_int_equal(ktls_install(9, &k, &seq, 0, &st, why, sizeof(why)), -EINVAL);
	assert_int_equal(ncalls, 0);
	assert_int_equal(st, KTLS_STATE_PLAIN);
	assert_non_null(strstr(why, "userspace TLS can go on"));
}

/* ---- real handshakes (tls_pair_testutil.h) ------------------------------------------------ */

#define HS(name, ver, suite, cipher, tickets)                                                      \
	static const struct tls_case name = { ver, suite, cipher, tickets };
HS(hs13_gcm128, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", KTLS_AES_GCM_128, 2)
HS(hs13_gcm256, TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", KTLS_AES_GCM_256, 2)
HS(hs13_chacha, TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", KTLS_CHACHA20_POLY1305, 2)
HS(hs13_noticket, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", KTLS_AES_GCM_128, 0)
HS(hs12_gcm128, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", KTLS_AES_GCM_128, 0)
HS(hs12_gcm256, TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", KTLS_AES_GCM_256, 0)
HS(hs12_chacha, TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", KTLS_CHACHA20_POLY1305, 0)

static void test_handshake(void **state)
{
	const struct tls_case *tc = *state;
	static const char grabbed[] = "client record the kernel must open";
	static const char *const from_kernel[] = { "first kernel record", "second kernel record" };
	bool tls13 = tc->version == TLS1_3_VERSION;
	uint8_t rec[512], pt[512], type;
	struct ktls_keys sk, ck;
	struct ktls_seq seq;
	struct kdir tx, rx;
	struct pair p;
	int n, rec_len;

	pair_new(&p, tc, true);
	client_absorb(&p);
	assert_int_equal(ktls_cipher_of(p.s), tc->cipher);
	assert_true(ktls_cipher_supported(p.s));
	/* Right after the handshake. TLS 1.3: the server's tickets went out with its last flight,
	 * under the application keys; nothing came back under the client's. TLS 1.2: each side's
	 * Finished, under the new keys. */
	assert_int_equal(ktls_capture_seq(p.s, &seq), 0);
	assert_int_equal(seq.tx, tls13 ? (uint64_t)tc->tickets : 1);
	assert_int_equal(seq.rx, tls13 ? 0 : 1);

	/* Two client records the server reads in userspace, one server record. */
	send_one(p.c, p.c_out, p.s_in, "hello-1");
	send_one(p.c, p.c_out, p.s_in, "hello-2");
	read_exact(p.s, "hello-1hello-2", 14);
	send_one(p.s, p.s_out, p.c_in, "srv-1");
	read_exact(p.c, "srv-1", 5);

	/* A client record the server never sees: the kernel's first. */
	assert_int_equal(SSL_write(p.c, grabbed, sizeof(grabbed)), (int)sizeof(grabbed));
	rec_len = BIO_read(p.c_out, rec, sizeof(rec));
	assert_true(rec_len > 5);
	assert_int_equal(rec_len, 5 + (rec[3] << 8 | rec[4]));

	/* TLS 1.3: records under the application keys only (tickets count); TLS 1.2: the
	 * Finished is record 0 in each direction. */
	assert_int_equal(ktls_capture_seq(p.s, &seq), 0);
	assert_int_equal(seq.rx, tls13 ? 2 : 3);
	assert_int_equal(seq.tx, tls13 ? (uint64_t)tc->tickets + 1 : 2);

	assert_int_equal(ktls_derive(p.s, &sk), 0);
	assert_int_equal(sk.version, tc->version);
	assert_int_equal(sk.cipher, tc->cipher);
	/* The client derives the mirror image. */
	assert_int_equal(ktls_derive(p.c, &ck), 0);
	assert_memory_equal(ck.tx.key, sk.rx.key, sizeof(sk.rx.key));
	assert_memory_equal(ck.rx.key, sk.tx.key, sizeof(sk.tx.key));
	assert_memory_equal(ck.tx.iv, sk.rx.iv, sizeof(sk.rx.iv));
	assert_memory_equal(ck.rx.iv, sk.tx.iv, sizeof(sk.tx.iv));

	install_ok(&sk, seq.tx, seq.rx);
	kdir_from(&tx, &calls[1]);
	kdir_from(&rx, &calls[2]);

	/* The kernel's RX opens what the client sent. */
	n = kopen(&rx, rec, (size_t)rec_len, &type, pt);
	assert_int_equal(n, (int)sizeof(grabbed));
	assert_int_equal(type, 23);
	assert_memory_equal(pt, grabbed, sizeof(grabbed));

	/* The client accepts what the kernel's TX seals, in order. */
	for (size_t i = 0; i < 2; i++) {
		size_t len =
		    kseal(&tx, 23, (const uint8_t *)from_kernel[i], strlen(from_kernel[i]), rec);

		assert_int_equal(BIO_write(p.c_in, rec, (int)len), (int)len);
	}
	read_exact(p.c, from_kernel[0], strlen(from_kernel[0]));
	read_exact(p.c, from_kernel[1], strlen(from_kernel[1]));

	ktls_keys_wipe(&sk);
	ktls_keys_wipe(&ck);
	pair_free(&p);
}

/* Suites ktlsd does not offload: CBC, and AES-CCM (the kernel has it, ktlsd does not: a custom
 * policy may still offer it). Neither kTLS nor ktlsd's record layer is offered the session,
 * ktls_derive says so, and the session goes on in OpenSSL. */
static void test_not_offloadable(void **state)
{
	static const struct tls_case cases[] = {
		{ TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256", KTLS_CIPHER_NONE, 0 },
		{ TLS1_2_VERSION, "ECDHE-ECDSA-AES128-CCM", KTLS_CIPHER_NONE, 0 },
		{ TLS1_2_VERSION, "ECDHE-ECDSA-AES128-CCM8", KTLS_CIPHER_NONE, 0 },
		{ TLS1_3_VERSION, "TLS_AES_128_CCM_SHA256", KTLS_CIPHER_NONE, 0 },
		{ TLS1_3_VERSION, "TLS_AES_128_CCM_8_SHA256", KTLS_CIPHER_NONE, 0 },
	};
	struct ktls_keys k;
	struct pair p;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tls_case *tc = &cases[i];

		pair_new(&p, tc, true);
		assert_string_equal(SSL_get_cipher_name(p.s), tc->suite);
		assert_int_equal(ktls_cipher_of(p.s), KTLS_CIPHER_NONE);
		assert_false(ktls_cipher_supported(p.s));
		assert_false(rlayer_supported(ktls_cipher_of(p.s), (uint16_t)tc->version));
		assert_int_equal(ktls_derive(p.s, &k), -EOPNOTSUPP);
		send_one(p.c, p.c_out, p.s_in, "to the server");
		read_exact(p.s, "to the server", 13);
		send_one(p.s, p.s_out, p.c_in, "to the client");
		read_exact(p.c, "to the client", 13);
		pair_free(&p);
	}
}

/* A TLS 1.3 KeyUpdate before the handoff: the captured secrets are stale. */
static void test_key_update_is_stale(void **state)
{
	struct ktls_keys k;
	struct ktls_seq seq;
	struct pair p;

	pair_new(&p, &hs13_gcm128, true);
	client_absorb(&p);
	assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
	send_one(p.c, p.c_out, p.s_in, "after update");
	read_exact(p.s, "after update", 12);
	assert_int_equal(ktls_capture_seq(p.s, &seq), -ESTALE);
	assert_int_equal(ktls_derive(p.s, &k), -ESTALE);
	pair_free(&p);
}

/* OpenSSL holding part of a record, or plaintext not yet read: not at a record boundary. */
static void test_not_at_boundary(void **state)
{
	uint8_t rec[256];
	struct ktls_seq seq;
	struct pair p;
	char b;
	int n;

	pair_new(&p, &hs13_gcm128, true);
	client_absorb(&p);
	assert_int_equal(SSL_write(p.c, "0123456789", 10), 10);
	n = BIO_read(p.c_out, rec, sizeof(rec));
	assert_true(n > 10);
	assert_int_equal(BIO_write(p.s_in, rec, 10), 10);
	assert_int_equal(SSL_read(p.s, &b, 1), -1);
	assert_int_equal(ktls_capture_seq(p.s, &seq), -EAGAIN);
	assert_int_equal(BIO_write(p.s_in, rec + 10, n - 10), n - 10);
	read_exact(p.s, "0", 1); /* nine bytes of plaintext left in OpenSSL */
	assert_int_equal(ktls_capture_seq(p.s, &seq), -EAGAIN);
	read_exact(p.s, "123456789", 9);
	assert_int_equal(ktls_capture_seq(p.s, &seq), 0);
	assert_int_equal(seq.rx, 1);
	pair_free(&p);
}

/* Without the capture: TLS 1.3 has no secrets; TLS 1.2 keys come from the session, but there
 * are no counts. */
static void test_without_capture(void **state)
{
	struct ktls_keys k;
	struct ktls_seq seq;
	struct pair p;

	pair_new(&p, &hs13_gcm128, false);
	assert_int_equal(ktls_capture_seq(p.s, &seq), -ENOKEY);
	assert_int_equal(ktls_derive(p.s, &k), -ENOKEY);
	pair_free(&p);
	pair_new(&p, &hs12_gcm128, false);
	assert_int_equal(ktls_capture_seq(p.s, &seq), -ENOKEY);
	assert_int_equal(ktls_derive(p.s, &k), 0);
	ktls_keys_wipe(&k);
	pair_free(&p);
}

static void other_keylog(const SSL *ssl, const char *line)
{
}

static void test_attach_busy(void **state)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(ctx);
	assert_int_equal(ktls_capture_attach(ctx), 0);
	assert_int_equal(ktls_capture_attach(ctx), 0); /* idempotent */
	SSL_CTX_set_keylog_callback(ctx, other_keylog);
	assert_int_equal(ktls_capture_attach(ctx), -EBUSY);
	SSL_CTX_free(ctx);
}

#define HS_TEST(name)                                                                              \
	{                                                                                          \
		"test_handshake_" #name, test_handshake, fake_reset, fake_restore, (void *)&name   \
	}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc8448_keys),
		cmocka_unit_test_setup_teardown(test_rfc8448_records, fake_reset, fake_restore),
		cmocka_unit_test(test_tls12_key_block),
		cmocka_unit_test(test_derive_rejects),
		cmocka_unit_test(test_cipher_names),
		cmocka_unit_test_setup_teardown(test_layout, fake_reset, fake_restore),
		cmocka_unit_test(test_follow_nonce_wraps),
		cmocka_unit_test_setup_teardown(test_failures, fake_reset, fake_restore),
		cmocka_unit_test_setup_teardown(test_tx_only, fake_reset, fake_restore),
		cmocka_unit_test_setup_teardown(test_bad_keys, fake_reset, fake_restore),
		HS_TEST(hs13_gcm128),
		HS_TEST(hs13_gcm256),
		HS_TEST(hs13_chacha),
		HS_TEST(hs13_noticket),
		HS_TEST(hs12_gcm128),
		HS_TEST(hs12_gcm256),
		HS_TEST(hs12_chacha),
		cmocka_unit_test(test_not_offloadable),
		cmocka_unit_test(test_key_update_is_stale),
		cmocka_unit_test(test_not_at_boundary),
		cmocka_unit_test(test_without_capture),
		cmocka_unit_test(test_attach_busy),
	};

	return cmocka_run_group_tests(tests, make_cert, free_cert);
}
