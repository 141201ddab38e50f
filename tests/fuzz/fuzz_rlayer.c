/* libFuzzer target: ktlsd's record layer (user/rlayer.c), the one parser of bytes a client sends
 * after the handshake. Two rlayers on mirrored keys (ours and a peer's), for the suite the first
 * input byte picks (TLS 1.2/1.3 × AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305); then:
 *   - mode 0: the rest is a raw byte stream from the client. Whatever it holds, rlayer_open takes
 *     whole records within the input, never writes past the room it is given, and never
 *     returns plaintext it did not authenticate (forging a tag is beyond a fuzzer, so any
 *     success here is a crash);
 *   - mode 1: the rest is a script of records the peer seals (type, length, an optional bit flip,
 *     an optional TLS 1.3 KeyUpdate on both sides). Every unflipped record opens to exactly what
 *     was sealed; a flipped one is refused (a flipped body or tag fails authentication). */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rlayer.h"

static const struct {
	uint16_t version;
	enum ktls_cipher cipher;
	size_t secret_len;
} suites[] = {
	{ TLS1_3_VERSION, KTLS_AES_GCM_128, 32 },
	{ TLS1_3_VERSION, KTLS_AES_GCM_256, 48 },
	{ TLS1_3_VERSION, KTLS_CHACHA20_POLY1305, 32 },
	{ TLS1_2_VERSION, KTLS_AES_GCM_128, 0 },
	{ TLS1_2_VERSION, KTLS_AES_GCM_256, 0 },
	{ TLS1_2_VERSION, KTLS_CHACHA20_POLY1305, 0 },
};

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 13);
}

/* ours opens what peer seals: peer's tx is ours' rx and the other way round. */
static void make_pair(unsigned s, struct rlayer **ours, struct rlayer **peer)
{
	struct ktls_keys k = { .version = suites[s].version, .cipher = suites[s].cipher };
	struct ktls_seq seq = { 3, 5 }, pseq = { 5, 3 };
	uint8_t a[KTLS_SECRET_MAX], b[KTLS_SECRET_MAX];
	struct ktls_dir tmp;

	fill(k.tx.key, sizeof(k.tx.key), 1);
	fill(k.tx.iv, sizeof(k.tx.iv), 2);
	fill(k.rx.key, sizeof(k.rx.key), 3);
	fill(k.rx.iv, sizeof(k.rx.iv), 4);
	fill(a, sizeof(a), 5);
	fill(b, sizeof(b), 6);
	*ours = rlayer_new(&k, &seq, a, b, suites[s].secret_len);
	tmp = k.tx;
	k.tx = k.rx;
	k.rx = tmp;
	*peer = rlayer_new(&k, &pseq, b, a, suites[s].secret_len);
	assert(*ours && *peer);
}

static void raw_stream(struct rlayer *rl, const uint8_t *d, size_t n, uint8_t *out)
{
	struct rlayer_rec rec;
	size_t room = n ? d[0] % 2 ? RLAYER_MAX_OPEN : 64 : 64;

	while (n) {
		int r = rlayer_open(rl, d, n, out, room, &rec);

		assert(r <= (int)n);
		assert(r <= 0); /* an authentic record from random bytes would be a forgery */
		if (r != -ENOSPC)
			return;
		room = RLAYER_MAX_OPEN;
	}
}

static void script(struct rlayer *ours, struct rlayer *peer, bool v13, const uint8_t *d, size_t n,
		   uint8_t *rec, uint8_t *out)
{
	static const uint8_t types[] = { TLS_CT_APPLICATION_DATA, TLS_CT_ALERT, TLS_CT_HANDSHAKE };
	struct rlayer_rec r;

	while (n >= 4) {
		uint8_t type = types[d[0] % 3], flags = d[1];
		size_t len = ((size_t)d[2] << 8 | d[3]) % (TLS_MAX_PLAINTEXT + 1);
		size_t flip;
		int sealed, opened;

		d += 4;
		n -= 4;
		if (len > n)
			len = n;
		sealed = rlayer_seal(peer, type, d, len, rec, TLS_MAX_PLAINTEXT + RLAYER_OVERHEAD);
		assert(sealed > 0 && (size_t)sealed <= len + RLAYER_OVERHEAD);
		flip = (size_t)(flags >> 1) * 131 % (size_t)sealed;
		if (flags & 1)
			rec[flip] ^= (uint8_t)(1u << (flags % 8));
		opened = rlayer_open(ours, rec, (size_t)sealed, out, RLAYER_MAX_OPEN, &r);
		if (flags & 1) {
			/* refused, or (a flipped length) not whole yet; never a different plaintext
			 */
			assert(opened <= 0);
			assert(flip < TLS_RECORD_HEADER || opened == -EBADMSG);
			return; /* a connection ends at a refused record */
		} else {
			assert(opened == sealed);
			assert(r.type == type && r.len == len);
			assert(len == 0 || memcmp(out, d, len) == 0);
		}
		if (v13 && (flags & 0x80) && !(flags & 1)) {
			assert(rlayer_key_update(peer, true) == 0);
			assert(rlayer_key_update(ours, false) == 0);
		}
		d += len;
		n -= len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *rec, *out;
	struct rlayer *ours, *peer;
	unsigned s;

	if (size < 2)
		return 0;
	if (!rec) {
		rec = malloc(TLS_MAX_PLAINTEXT + RLAYER_OVERHEAD);
		out = malloc(RLAYER_MAX_OPEN);
	}
	s = data[0] % (sizeof(suites) / sizeof(suites[0]));
	make_pair(s, &ours, &peer);
	if (data[1] % 2 == 0)
		raw_stream(ours, data + 2, size - 2, out);
	else
		script(ours, peer, suites[s].version == TLS1_3_VERSION, data + 2, size - 2, rec,
		       out);
	rlayer_free(ours);
	rlayer_free(peer);
	return 0;
}
