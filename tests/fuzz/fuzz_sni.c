/* libFuzzer target: the ClientHello/SNI parser on arbitrary bytes. Checks what conn.c relies on:
 * a result for every input, a prefix of an input never completes when the input needs more, a
 * completed hello lies within the input and the wire limit, and a name is normalised (lowercase
 * printable ASCII, no trailing dot, at most 253 characters). The first byte, when it is below
 * 64, also re-frames the rest into records of that size, so split hellos get explored. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "sni.h"

static uint8_t framed[4 * SNI_MAX_WIRE];

static void check(const uint8_t *d, size_t n)
{
	struct sni_hello h;
	const char *why = NULL;
	enum sni_result r = sni_parse(d, n, &h, &why);

	assert(r <= SNI_TOO_BIG);
	if (r == SNI_NEED_MORE) {
		assert(n < SNI_MAX_WIRE + TLS_RECORD_HEADER + TLS_MAX_PLAINTEXT);
		return;
	}
	if (r != SNI_DONE) {
		assert(why && why[0]);
		return;
	}
	assert(h.wire_len > 0 && h.wire_len <= n && h.wire_len <= SNI_MAX_WIRE);
	/* the same bytes without what follows the hello give the same answer */
	struct sni_hello h2;
	assert(sni_parse(d, h.wire_len, &h2, NULL) == SNI_DONE);
	assert(strcmp(h.name, h2.name) == 0 && h.has_sni == h2.has_sni);
	assert(sni_parse(d, h.wire_len - 1, &h2, NULL) == SNI_NEED_MORE);
	size_t len = strlen(h.name);
	assert(h.has_sni == (len > 0));
	assert(len <= SNI_MAX_NAME && (len == 0 || h.name[len - 1] != '.'));
	for (size_t i = 0; i < len; i++)
		assert(h.name[i] > 0x20 && h.name[i] < 0x7f &&
		       !(h.name[i] >= 'A' && h.name[i] <= 'Z'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t frag, o = 0;

	check(data, size);
	if (size < 2 || data[0] == 0 || data[0] >= 64)
		return 0;
	frag = data[0];
	for (size_t i = 1; i < size && o + 5 + frag <= sizeof(framed); i += frag) {
		size_t k = size - i < frag ? size - i : frag;

		framed[o++] = 22, framed[o++] = 3, framed[o++] = 1;
		framed[o++] = 0, framed[o++] = (uint8_t)k;
		memcpy(framed + o, data + i, k);
		o += k;
	}
	check(framed, o);
	return 0;
}
