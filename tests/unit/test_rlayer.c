/* test_rlayer — ktlsd's record layer against OpenSSL's, over real handshakes in this process
 * (TLS 1.2 and 1.3 × AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305): the server's SSL is replaced
 * by an rlayer built from its captured keys and sequence numbers, as conn_rl_take_over does, and
 * the OpenSSL client on the other side must accept every record rlayer seals, and rlayer must open
 * every record the client sends: data of every size up to a full record, alerts, TLS 1.3
 * KeyUpdate both ways (chained), a TLS 1.2 renegotiation attempt. Tampered, truncated, oversized
 * and misplaced records fail the way RFC 8446 §5.2 and §6.2 say. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ktls.h"
#include "rlayer.h"
#include "tls_pair_testutil.h"

#define REC_MAX (TLS_RECORD_HEADER + RLAYER_MAX_OPEN + 64)

struct session {
	struct pair p;
	struct rlayer *rl; /* the server side, continuing p.s */
};

/* A handshake, then the server's SSL state taken over by an rlayer. */
static void session_new(struct session *s, const struct tls_case *tc)
{
	uint8_t txs[KTLS_SECRET_MAX], rxs[KTLS_SECRET_MAX];
	struct ktls_keys k;
	struct ktls_seq seq;
	int slen = 0;

	pair_new(&s->p, tc, true);
	client_absorb(&s->p);
	assert_true(rlayer_supported(ktls_cipher_of(s->p.s), (uint16_t)tc->version));
	assert_int_equal(ktls_capture_seq(s->p.s, &seq), 0);
	assert_int_equal(ktls_derive(s->p.s, &k), 0);
	if (tc->version == TLS1_3_VERSION) {
		slen = ktls_traffic_secrets(s->p.s, txs, rxs);
		assert_true(slen == 32 || slen == 48);
	}
	s->rl = rlayer_new(&k, &seq, txs, rxs, (size_t)slen);
	assert_non_null(s->rl);
	ktls_keys_wipe(&k);
}

static void session_free(struct session *s)
{
	rlayer_free(s->rl);
	pair_free(&s->p);
}

/* Everything the client wrote since the last call. */
static size_t client_bytes(struct session *s, uint8_t *out, size_t max)
{
	int n = BIO_read(s->p.c_out, out, (int)max);

	return n > 0 ? (size_t)n : 0;
}

/* Opens exactly one record from in[0, len) and checks it took all of it. */
static struct rlayer_rec open_one(struct session *s, const uint8_t *in, size_t len, uint8_t *pt)
{
	struct rlayer_rec rec;

	assert_int_equal(rlayer_open(s->rl, in, len, pt, RLAYER_MAX_OPEN, &rec), (int)len);
	return rec;
}

/* The client sends msg; rlayer must return it as one data record. */
static void client_to_rlayer(struct session *s, const uint8_t *msg, size_t n)
{
	uint8_t *rec = malloc(REC_MAX), *pt = malloc(RLAYER_MAX_OPEN);
	struct rlayer_rec r;
	size_t len;

	assert_int_equal(SSL_write(s->p.c, msg, (int)n), (int)n);
	len = client_bytes(s, rec, REC_MAX);
	r = open_one(s, rec, len, pt);
	assert_int_equal(r.type, TLS_CT_APPLICATION_DATA);
	assert_int_equal(r.len, n);
	assert_memory_equal(pt, msg, n);
	free(rec);
	free(pt);
}

/* rlayer seals a record of type; the client's SSL takes it. */
static void rlayer_to_client(struct session *s, uint8_t type, const uint8_t *msg, size_t n)
{
	uint8_t *rec = malloc(REC_MAX);
	int len = rlayer_seal(s->rl, type, msg, n, rec, REC_MAX);

	assert_true(len > 0);
	assert_int_equal(BIO_write(s->p.c_in, rec, len), len);
	free(rec);
}

static void client_reads(struct session *s, const uint8_t *want, size_t n)
{
	uint8_t *got = malloc(n + 1);
	size_t have = 0;

	while (have < n) {
		int r = SSL_read(s->p.c, got + have, (int)(n - have));

		if (r <= 0)
			fail_msg("SSL_read: error %d", SSL_get_error(s->p.c, r));
		have += (size_t)r;
	}
	assert_memory_equal(got, want, n);
	free(got);
}

static uint8_t *pattern(size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + 7);
	return p;
}

static void test_data_both_ways(void **state)
{
	static const size_t sizes[] = { 0, 1, 100, 1024, 16383, TLS_MAX_PLAINTEXT };
	struct session s;

	session_new(&s, *state);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *m = pattern(sizes[i]);

		if (sizes[i]) /* OpenSSL sends no empty record */
			client_to_rlayer(&s, m, sizes[i]);
		rlayer_to_client(&s, TLS_CT_APPLICATION_DATA, m, sizes[i]);
		if (sizes[i])
			client_reads(&s, m, sizes[i]);
		free(m);
	}
	session_free(&s);
}

/* Records arrive in pieces: nothing is taken before the last byte; too little room is said
 * before anything is decrypted, and the same record opens once there is room. */
static void test_partial_and_room(void **state)
{
	static const char msg[] = "split across reads";
	uint8_t rec[256], pt[256];
	struct rlayer_rec r;
	struct session s;
	size_t len;

	session_new(&s, *state);
	assert_int_equal(SSL_write(s.p.c, msg, sizeof(msg)), (int)sizeof(msg));
	len = client_bytes(&s, rec, sizeof(rec));
	for (size_t k = 0; k < len; k++)
		assert_int_equal(rlayer_open(s.rl, rec, k, pt, sizeof(pt), &r), 0);
	assert_int_equal(rlayer_open(s.rl, rec, len, pt, 4, &r), -ENOSPC);
	assert_int_equal(rlayer_open(s.rl, rec, len, pt, sizeof(pt), &r), (int)len);
	assert_int_equal(r.len, sizeof(msg));
	assert_memory_equal(pt, msg, sizeof(msg));
	/* and the next one still lines up */
	client_to_rlayer(&s, (const uint8_t *)"next", 4);
	/* too little room to seal: nothing written, the sequence number unchanged */
	assert_int_equal(rlayer_seal(s.rl, TLS_CT_APPLICATION_DATA, (const uint8_t *)msg,
				     sizeof(msg), rec, sizeof(msg) + TLS_RECORD_HEADER),
			 -ENOSPC);
	rlayer_to_client(&s, TLS_CT_APPLICATION_DATA, (const uint8_t *)msg, sizeof(msg));
	client_reads(&s, (const uint8_t *)msg, sizeof(msg));
	session_free(&s);
}

/* Dropping the cipher contexts while idle changes nothing on the wire. */
static void test_idle_and_back(void **state)
{
	struct session s;

	session_new(&s, *state);
	client_to_rlayer(&s, (const uint8_t *)"before", 6);
	rlayer_to_client(&s, TLS_CT_APPLICATION_DATA, (const uint8_t *)"one", 3);
	rlayer_idle(s.rl);
	rlayer_idle(s.rl);
	client_to_rlayer(&s, (const uint8_t *)"after", 5);
	rlayer_to_client(&s, TLS_CT_APPLICATION_DATA, (const uint8_t *)"two", 3);
	client_reads(&s, (const uint8_t *)"onetwo", 6);
	session_free(&s);
}

/* Any changed byte of a record (header, body or tag) fails authentication. */
static void test_tampered(void **state)
{
	uint8_t rec[256], copy[256], pt[256];
	struct rlayer_rec r;
	struct session s;
	size_t len;

	session_new(&s, *state);
	assert_int_equal(SSL_write(s.p.c, "payload", 7), 7);
	len = client_bytes(&s, rec, sizeof(rec));
	for (size_t i = 0; i < len; i++) {
		if (i < 3)
			continue; /* type and version are checked before the AEAD */
		if (i == 3 || i == 4)
			continue; /* a changed length is an incomplete or misframed record */
		memcpy(copy, rec, len);
		copy[i] ^= 0x40;
		assert_int_equal(rlayer_open(s.rl, copy, len, pt, sizeof(pt), &r), -EBADMSG);
	}
	/* failures consumed no sequence number: the original still opens */
	assert_int_equal(rlayer_open(s.rl, rec, len, pt, sizeof(pt), &r), (int)len);
	/* a replay does not */
	assert_int_equal(rlayer_open(s.rl, rec, len, pt, sizeof(pt), &r), -EBADMSG);
	assert_int_equal(rlayer_alert(s.rl, -EBADMSG), 20);
	session_free(&s);
}

static void test_alerts(void **state)
{
	static const uint8_t close_notify[2] = { 1, 0 };
	uint8_t rec[256], pt[256], b;
	struct rlayer_rec r;
	struct session s;
	size_t len;

	session_new(&s, *state);
	assert_int_equal(SSL_shutdown(s.p.c), 0); /* sends close_notify */
	len = client_bytes(&s, rec, sizeof(rec));
	r = open_one(&s, rec, len, pt);
	assert_int_equal(r.type, TLS_CT_ALERT);
	assert_int_equal(r.len, 2);
	assert_memory_equal(pt, close_notify, 2);
	rlayer_to_client(&s, TLS_CT_ALERT, close_notify, 2);
	assert_int_equal(SSL_read(s.p.c, &b, 1), 0);
	assert_int_equal(SSL_get_error(s.p.c, 0), SSL_ERROR_ZERO_RETURN);
	session_free(&s);
}

/* TLS 1.3: the client's KeyUpdate, asking for ours; ours; data under the new keys both ways;
 * and again, so the second generation follows the first. */
static void test_key_update(void **state)
{
	static const uint8_t ours[5] = { 24, 0, 0, 1, 0 };
	uint8_t rec[512], pt[512];
	struct rlayer_rec r;
	struct session s;
	size_t len;

	session_new(&s, *state);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(SSL_key_update(s.p.c, SSL_KEY_UPDATE_REQUESTED), 1);
		assert_int_equal(SSL_write(s.p.c, "x", 1), 1); /* sends the KeyUpdate, then x */
		len = client_bytes(&s, rec, sizeof(rec));
		len = (size_t)(TLS_RECORD_HEADER + (rec[3] << 8 | rec[4])); /* the first record */
		r = open_one(&s, rec, len, pt);
		assert_int_equal(r.type, TLS_CT_HANDSHAKE);
		assert_int_equal(r.len, 5);
		assert_int_equal(pt[0], 24);
		assert_int_equal(pt[4], 1); /* update_requested */
		assert_int_equal(rlayer_key_update(s.rl, false), 0);
		/* the "x" after it, under the client's next keys */
		memmove(rec, rec + len, 512 - len);
		len = (size_t)(TLS_RECORD_HEADER + (rec[3] << 8 | rec[4]));
		r = open_one(&s, rec, len, pt);
		assert_int_equal(r.type, TLS_CT_APPLICATION_DATA);
		assert_memory_equal(pt, "x", 1);
		/* ours, then data under our next keys */
		rlayer_to_client(&s, TLS_CT_HANDSHAKE, ours, sizeof(ours));
		assert_int_equal(rlayer_key_update(s.rl, true), 0);
		rlayer_to_client(&s, TLS_CT_APPLICATION_DATA, (const uint8_t *)"after update", 12);
		client_reads(&s, (const uint8_t *)"after update", 12);
		client_to_rlayer(&s, (const uint8_t *)"client after", 12);
	}
	session_free(&s);
}

/* TLS 1.2: a renegotiation attempt reaches the caller as a handshake record (a ClientHello);
 * rlayer's no_renegotiation warning reaches OpenSSL, which gives up. KeyUpdate does not exist. */
static void test_tls12_renegotiation(void **state)
{
	static const uint8_t no_reneg[2] = { 1, 100 };
	uint8_t rec[4096], pt[RLAYER_MAX_OPEN], b;
	struct rlayer_rec r;
	struct session s;
	size_t len;

	session_new(&s, *state);
	assert_int_equal(rlayer_key_update(s.rl, false), -EOPNOTSUPP);
	assert_int_equal(SSL_renegotiate(s.p.c), 1);
	assert_int_equal(SSL_do_handshake(s.p.c), -1); /* sends the ClientHello, waits */
	len = client_bytes(&s, rec, sizeof(rec));
	r = open_one(&s, rec, len, pt);
	assert_int_equal(r.type, TLS_CT_HANDSHAKE);
	assert_int_equal(pt[0], 1); /* client_hello */
	rlayer_to_client(&s, TLS_CT_ALERT, no_reneg, sizeof(no_reneg));
	assert_true(SSL_read(s.p.c, &b, 1) <= 0);
	ERR_clear_error();
	session_free(&s);
}

/* Record-level errors that need no AEAD: a type that cannot come after the handshake, a length
 * beyond the protocol's limit, a TLS 1.3 record that is all padding. */
static void test_bad_records(void **state)
{
	const struct tls_case *tc = *state;
	bool v13 = tc->version == TLS1_3_VERSION;
	uint8_t rec[REC_MAX] = { 0 }, pt[RLAYER_MAX_OPEN];
	struct rlayer_rec r;
	struct session s;
	int len;

	session_new(&s, tc);
	/* TLS 1.3: a plaintext alert, refused from its header; TLS 1.2: a ChangeCipherSpec that
	 * does not authenticate is bad_record_mac, as from OpenSSL */
	memcpy(rec, (const uint8_t[]){ v13 ? 21 : 20, 3, 3, 0, 2, 1, 0 }, 7);
	assert_int_equal(rlayer_open(s.rl, rec, 7, pt, sizeof(pt), &r), v13 ? -EPROTO : -EBADMSG);
	assert_int_equal(rlayer_alert(s.rl, -EPROTO), 10);
	/* a record version other than 0x0303: OpenSSL's decode_error (1.3), protocol_version (1.2)
	 */
	memcpy(rec, (const uint8_t[]){ 23, 3, 1, 0, 20 }, 5);
	assert_int_equal(rlayer_open(s.rl, rec, 5, pt, sizeof(pt), &r), -EPROTONOSUPPORT);
	assert_int_equal(rlayer_alert(s.rl, -EPROTONOSUPPORT), v13 ? 50 : 70);
	/* one byte over the limit, said from the header alone */
	len = v13 ? 16384 + 256 + 1 : 16384 + 2048 + 1;
	memcpy(rec, (const uint8_t[]){ 23, 3, 3, (uint8_t)(len >> 8), (uint8_t)len }, 5);
	assert_int_equal(rlayer_open(s.rl, rec, 5, pt, sizeof(pt), &r), -EMSGSIZE);
	assert_int_equal(rlayer_alert(s.rl, -EMSGSIZE), 22);
	/* too short to hold a tag */
	memcpy(rec, (const uint8_t[]){ 23, 3, 3, 0, 4, 1, 2, 3, 4 }, 9);
	assert_int_equal(rlayer_open(s.rl, rec, 9, pt, sizeof(pt), &r), -EBADMSG);
	session_free(&s);

	if (!v13)
		return;
	/* A TLS 1.3 record with no content type: sealed by a client-side rlayer as type 0. */
	{
		struct ktls_keys ck;
		struct ktls_seq cseq;
		uint8_t txs[KTLS_SECRET_MAX], rxs[KTLS_SECRET_MAX];
		struct rlayer *crl;
		int slen;

		session_new(&s, tc);
		assert_int_equal(ktls_derive(s.p.c, &ck), 0);
		assert_int_equal(ktls_capture_seq(s.p.c, &cseq), 0);
		slen = ktls_traffic_secrets(s.p.c, txs, rxs);
		assert_true(slen > 0);
		crl = rlayer_new(&ck, &cseq, txs, rxs, (size_t)slen);
		assert_non_null(crl);
		len = rlayer_seal(crl, TLS_CT_APPLICATION_DATA, (const uint8_t *)"ok", 2, rec,
				  sizeof(rec));
		r = open_one(&s, rec, (size_t)len, pt);
		assert_int_equal(r.type, TLS_CT_APPLICATION_DATA);
		len = rlayer_seal(crl, 0, NULL, 0, rec, sizeof(rec));
		assert_true(len > 0);
		assert_int_equal(rlayer_open(s.rl, rec, (size_t)len, pt, sizeof(pt), &r), -EPROTO);
		rlayer_free(crl);
		ktls_keys_wipe(&ck);
		session_free(&s);
	}
}

/* Authenticated records of every content type, sealed by a client-side rlayer: what
 * rlayer_open returns for each (the caller, conn_rl.c, decides what a type means). TLS 1.2 refuses
 * the types that cannot follow the handshake once they authenticate; TLS 1.3 hands the inner type
 * up, whatever it is. */
static void test_record_types(void **state)
{
	static const struct {
		uint8_t type;
		uint16_t len;
		int v12, v13; /* 1: opened with this type and length; else the error */
	} rows[] = {
		{ TLS_CT_APPLICATION_DATA, 0, 1, 1 },
		{ TLS_CT_APPLICATION_DATA, 16384, 1, 1 },
		{ TLS_CT_ALERT, 2, 1, 1 },
		{ TLS_CT_ALERT, 0, 1, 1 },
		{ TLS_CT_HANDSHAKE, 5, 1, 1 },
		{ TLS_CT_CHANGE_CIPHER_SPEC, 1, -EPROTO, 1 },
		{ 24, 1, -EPROTO, 1 },
		{ 255, 3, -EPROTO, 1 },
	};
	const struct tls_case *tc = *state;
	static uint8_t rec[REC_MAX], pt[RLAYER_MAX_OPEN], body[TLS_MAX_PLAINTEXT];
	uint8_t txs[KTLS_SECRET_MAX], rxs[KTLS_SECRET_MAX];
	struct ktls_keys ck;
	struct ktls_seq cseq;
	struct rlayer_rec r;
	struct rlayer *crl;
	struct session s;
	int slen = 0, len, want;

	session_new(&s, tc);
	assert_int_equal(ktls_derive(s.p.c, &ck), 0);
	assert_int_equal(ktls_capture_seq(s.p.c, &cseq), 0);
	if (tc->version == TLS1_3_VERSION) {
		slen = ktls_traffic_secrets(s.p.c, txs, rxs);
		assert_true(slen > 0);
	}
	crl = rlayer_new(&ck, &cseq, slen ? txs : NULL, slen ? rxs : NULL, (size_t)slen);
	assert_non_null(crl);
	memset(body, 0x5a, sizeof(body));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		want = tc->version == TLS1_3_VERSION ? rows[i].v13 : rows[i].v12;
		len = rlayer_seal(crl, rows[i].type, body, rows[i].len, rec, sizeof(rec));
		assert_true(len > 0);
		if (want != 1) {
			assert_int_equal(rlayer_open(s.rl, rec, (size_t)len, pt, sizeof(pt), &r),
					 want);
			break; /* the session is over: the server's sequence number did not move */
		}
		r = open_one(&s, rec, (size_t)len, pt);
		assert_int_equal(r.type, rows[i].type);
		assert_int_equal(r.len, rows[i].len);
	}
	rlayer_free(crl);
	ktls_keys_wipe(&ck);
	session_free(&s);
}

/* TLS 1.2 GCM: after OpenSSL's last record, rlayer's explicit nonces continue from its nonce,
 * never from a value OpenSSL may already have used. */
static void test_tls12_nonce_follows(void **state)
{
	static const uint8_t last[8] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xff };
	static const uint8_t next[8] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xdf, 0x00 };
	uint8_t rec[256];
	struct ktls_keys k;
	struct ktls_seq seq;
	struct rlayer *rl;
	struct pair p;
	int len;

	pair_new(&p, *state, true);
	client_absorb(&p);
	assert_int_equal(ktls_capture_seq(p.s, &seq), 0);
	assert_int_equal(ktls_derive(p.s, &k), 0);
	ktls_keys_follow_tls12_nonce(&k, last);
	rl = rlayer_new(&k, &seq, NULL, NULL, 0);
	assert_non_null(rl);
	len =
	    rlayer_seal(rl, TLS_CT_APPLICATION_DATA, (const uint8_t *)"nonce", 5, rec, sizeof(rec));
	assert_int_equal(len, 5 + 8 + 5 + 16);
	assert_memory_equal(rec + 5, next, 8);
	assert_int_equal(BIO_write(p.c_in, rec, len), len);
	read_exact(p.c, "nonce", 5);
	rlayer_free(rl);
	ktls_keys_wipe(&k);
	pair_free(&p);
}

static void test_unsupported(void **state)
{
	struct ktls_keys k = { .version = TLS1_3_VERSION, .cipher = KTLS_CIPHER_NONE };
	struct ktls_seq seq = { 0, 0 };
	uint8_t secret[32] = { 0 };

	/* AES-CCM sessions are NONE too (test_ktls.c, test_not_offloadable). */
	assert_false(rlayer_supported(KTLS_CIPHER_NONE, TLS1_3_VERSION));
	assert_false(rlayer_supported(KTLS_CIPHER_NONE, TLS1_2_VERSION));
	assert_false(rlayer_supported(KTLS_AES_GCM_128, TLS1_1_VERSION));
	assert_true(rlayer_supported(KTLS_CHACHA20_POLY1305, TLS1_2_VERSION));
	assert_null(rlayer_new(&k, &seq, secret, secret, 32));
	k.cipher = KTLS_AES_GCM_128;
	assert_null(rlayer_new(&k, &seq, secret, secret, 20)); /* no such hash */
	rlayer_free(NULL);
	rlayer_idle(NULL);
}

#define CASE(name, ver, suite, cipher)                                                             \
	static const struct tls_case name = { ver, suite, cipher, 2 };
CASE(c13_gcm128, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", KTLS_AES_GCM_128)
CASE(c13_gcm256, TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", KTLS_AES_GCM_256)
CASE(c13_chacha, TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", KTLS_CHACHA20_POLY1305)
CASE(c12_gcm128, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", KTLS_AES_GCM_128)
CASE(c12_gcm256, TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", KTLS_AES_GCM_256)
CASE(c12_chacha, TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", KTLS_CHACHA20_POLY1305)

#define EACH(fn)                                                                                   \
	cmocka_unit_test_prestate(fn, (void *)&c13_gcm128),                                        \
	    cmocka_unit_test_prestate(fn, (void *)&c13_gcm256),                                    \
	    cmocka_unit_test_prestate(fn, (void *)&c13_chacha),                                    \
	    cmocka_unit_test_prestate(fn, (void *)&c12_gcm128),                                    \
	    cmocka_unit_test_prestate(fn, (void *)&c12_gcm256),                                    \
	    cmocka_unit_test_prestate(fn, (void *)&c12_chacha)

int main(void)
{
	const struct CMUnitTest tests[] = {
		EACH(test_data_both_ways),
		EACH(test_partial_and_room),
		EACH(test_idle_and_back),
		EACH(test_tampered),
		EACH(test_alerts),
		EACH(test_bad_records),
		EACH(test_record_types),
		cmocka_unit_test_prestate(test_key_update, (void *)&c13_gcm128),
		cmocka_unit_test_prestate(test_key_update, (void *)&c13_gcm256),
		cmocka_unit_test_prestate(test_key_update, (void *)&c13_chacha),
		cmocka_unit_test_prestate(test_tls12_renegotiation, (void *)&c12_gcm128),
		cmocka_unit_test_prestate(test_tls12_renegotiation, (void *)&c12_chacha),
		cmocka_unit_test_prestate(test_tls12_nonce_follows, (void *)&c12_gcm128),
		cmocka_unit_test_prestate(test_tls12_nonce_follows, (void *)&c12_gcm256),
		cmocka_unit_test(test_unsupported),
	};

	return cmocka_run_group_tests(tests, make_cert, free_cert);
}
