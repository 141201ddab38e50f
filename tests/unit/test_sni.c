/* Unit tests for sni: real ClientHellos captured from openssl s_client, curl, python ssl and
 * gnutls-cli (tests/fuzz/corpus/sni/, also the fuzzer's seeds) fed whole, at every prefix and
 * re-framed into records of many sizes; and built hellos for every refusal and limit. */
#include <errno.h>
#include <libgen.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sni.h"

#define MAXBUF (8 * SNI_MAX_WIRE)

struct fixture {
	const char *file;
	const char *name; /* expected SNI, NULL for none */
};

static const struct fixture fixtures[] = {
	{ "openssl-s_client.bin", "app.example.com" },
	{ "openssl-tls12-nosni.bin", NULL },
	{ "curl.bin", "www.example.org" }, /* sent as "www.Example.ORG." */
	{ "python-ssl.bin", "api.pets.example.com" },
	{ "gnutls-cli.bin", "gnutls.example.net" },
	{ "python-ip-nosni.bin", NULL },
};

static size_t load(const char *file, uint8_t *buf, size_t cap)
{
	char dir[512], path[1024];
	FILE *f;
	size_t n;

	snprintf(dir, sizeof(dir), "%s", __FILE__);
	snprintf(path, sizeof(path), "%s/../fuzz/corpus/sni/%s", dirname(dir), file);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

/* Re-frames the handshake bytes carried by the records in in[0..len) into records of at most
 * frag bytes each. Returns the new length. */
static size_t reframe(const uint8_t *in, size_t len, size_t frag, uint8_t *out)
{
	static uint8_t hs[SNI_MAX_WIRE];
	size_t h = 0, o = 0;

	for (size_t off = 0; off + 5 <= len;) {
		size_t rl = (size_t)in[off + 3] << 8 | in[off + 4];

		memcpy(hs + h, in + off + 5, rl);
		h += rl;
		off += 5 + rl;
	}
	for (size_t i = 0; i < h; i += frag) {
		size_t k = h - i < frag ? h - i : frag;

		out[o++] = 22;
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)(k >> 8);
		out[o++] = (uint8_t)k;
		memcpy(out + o, hs + i, k);
		o += k;
	}
	return o;
}

static void expect_done(const uint8_t *in, size_t len, const char *name)
{
	struct sni_hello h;
	const char *why = NULL;
	enum sni_result r = sni_parse(in, len, &h, &why);

	if (r != SNI_DONE)
		fail_msg("%s (%s), expected done", sni_result_name(r), why ? why : "-");
	assert_int_equal(h.has_sni, name != NULL);
	assert_string_equal(h.name, name ? name : "");
}

static void test_captured_whole_and_every_prefix(void **state)
{
	static uint8_t buf[MAXBUF];
	struct sni_hello h;

	for (size_t f = 0; f < sizeof(fixtures) / sizeof(fixtures[0]); f++) {
		size_t n = load(fixtures[f].file, buf, sizeof(buf));

		expect_done(buf, n, fixtures[f].name);
		sni_parse(buf, n, &h, NULL);
		assert_int_equal(h.wire_len, n);
		for (size_t k = 0; k < n; k++)
			assert_int_equal(sni_parse(buf, k, &h, NULL), SNI_NEED_MORE);
	}
}

static void test_captured_reframed(void **state)
{
	static const size_t frags[] = { 1, 2, 3, 4, 5, 7, 64, 100, 255, 16384 };
	static uint8_t buf[MAXBUF], re[MAXBUF];
	struct sni_hello h;

	for (size_t f = 0; f < sizeof(fixtures) / sizeof(fixtures[0]); f++) {
		size_t n = load(fixtures[f].file, buf, sizeof(buf));

		for (size_t i = 0; i < sizeof(frags) / sizeof(frags[0]); i++) {
			size_t m = reframe(buf, n, frags[i], re);

			expect_done(re, m, fixtures[f].name);
			sni_parse(re, m, &h, NULL);
			assert_int_equal(h.wire_len, m);
			/* every split point across the records, as reads would deliver them */
			for (size_t k = 0; k < m; k += (frags[i] == 1 ? 13 : 1))
				assert_int_equal(sni_parse(re, k, &h, NULL), SNI_NEED_MORE);
		}
	}
}

static void test_trailing_bytes_are_not_the_hello(void **state)
{
	static uint8_t buf[MAXBUF];
	size_t n = load("python-ssl.bin", buf, sizeof(buf));
	struct sni_hello h;

	memcpy(buf + n, "\x17\x03\x03\x00\x05hello", 10); /* early data after the hello */
	assert_int_equal(sni_parse(buf, n + 10, &h, NULL), SNI_DONE);
	assert_int_equal(h.wire_len, n);
}

/* A ClientHello with the given extensions, framed in one record. Returns the wire length. */
static size_t build(const uint8_t *ext, size_t ext_len, bool with_ext_block, uint8_t *out)
{
	size_t body = 2 + 32 + 1 + 2 + 2 + 1 + 1 + (with_ext_block ? 2 + ext_len : 0);
	size_t msg = 4 + body, o = 0;

	out[o++] = 22, out[o++] = 3, out[o++] = 1;
	out[o++] = (uint8_t)(msg >> 8), out[o++] = (uint8_t)msg;
	out[o++] = 1, out[o++] = (uint8_t)(body >> 16), out[o++] = (uint8_t)(body >> 8);
	out[o++] = (uint8_t)body;
	out[o++] = 3, out[o++] = 3;
	memset(out + o, 0xaa, 32), o += 32;
	out[o++] = 0;		       /* session id */
	out[o++] = 0, out[o++] = 2;    /* cipher suites */
	out[o++] = 0x13, out[o++] = 1; /* TLS_AES_128_GCM_SHA256 */
	out[o++] = 1, out[o++] = 0;    /* compression: null */
	if (with_ext_block) {
		out[o++] = (uint8_t)(ext_len >> 8), out[o++] = (uint8_t)ext_len;
		if (ext_len)
			memcpy(out + o, ext, ext_len);
		o += ext_len;
	}
	return o;
}

/* A server_name extension for name (length n), type 0. */
static size_t sni_ext(const char *name, size_t n, uint8_t *out)
{
	out[0] = 0, out[1] = 0;
	out[2] = (uint8_t)((n + 5) >> 8), out[3] = (uint8_t)(n + 5);
	out[4] = (uint8_t)((n + 3) >> 8), out[5] = (uint8_t)(n + 3);
	out[6] = 0, out[7] = (uint8_t)(n >> 8), out[8] = (uint8_t)n;
	memcpy(out + 9, name, n);
	return 9 + n;
}

static enum sni_result parse(const uint8_t *in, size_t len, struct sni_hello *h)
{
	return sni_parse(in, len, h, NULL);
}

static void test_built_hellos(void **state)
{
	static uint8_t w[MAXBUF], e[MAXBUF];
	struct sni_hello h;
	size_t n, el;

	n = build(NULL, 0, false, w); /* no extension block at all */
	assert_int_equal(parse(w, n, &h), SNI_DONE);
	assert_false(h.has_sni);

	el = sni_ext("Shop.Example.COM.", 17, e);
	n = build(e, el, true, w);
	assert_int_equal(parse(w, n, &h), SNI_DONE);
	assert_string_equal(h.name, "shop.example.com");

	el = sni_ext("bad name.example.com", 20, e); /* a space: not a DNS name */
	n = build(e, el, true, w);
	assert_int_equal(parse(w, n, &h), SNI_DONE);
	assert_false(h.has_sni);
	assert_true(h.name_invalid);

	static const char *const empty_labels[] = { "a..example.com", ".a.example.com",
						    "a.example.com..", "." };
	static char longname[300];

	for (size_t i = 0; i < sizeof(empty_labels) / sizeof(empty_labels[0]); i++) {
		el = sni_ext(empty_labels[i], strlen(empty_labels[i]), e);
		n = build(e, el, true, w);
		assert_int_equal(parse(w, n, &h), SNI_DONE);
		assert_false(h.has_sni);
		assert_true(h.name_invalid);
	}

	memset(longname, 'a', sizeof(longname));
	el = sni_ext(longname, 254, e); /* 254 characters, no trailing dot */
	n = build(e, el, true, w);
	assert_int_equal(parse(w, n, &h), SNI_DONE);
	assert_true(h.name_invalid);
}

static void test_refusals(void **state)
{
	static uint8_t w[MAXBUF], e[MAXBUF];
	const char *why;
	struct sni_hello h;
	size_t n, el;

	assert_int_equal(sni_parse((const uint8_t *)"G", 1, &h, &why), SNI_NOT_TLS);
	assert_int_equal(parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &h), SNI_NOT_TLS);
	/* SSLv2-compatible ClientHello, as old clients sent it */
	assert_int_equal(sni_parse((const uint8_t *)"\x80\x2e\x01\x03\x01", 5, &h, &why),
			 SNI_NOT_TLS);
	assert_non_null(strstr(why, "SSLv2"));
	assert_int_equal(parse((const uint8_t *)"\x16\x02", 2, &h), SNI_NOT_TLS);
	assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x00", 5, &h), SNI_MALFORMED);
	assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x40\x01", 5, &h), SNI_MALFORMED);
	/* a ServerHello where a ClientHello belongs: refused at its first byte */
	assert_int_equal(parse((const uint8_t *)"\x16\x03\x03\x00\x30\x02", 6, &h), SNI_MALFORMED);

	el = sni_ext("a.example.com", 13, e);
	n = build(e, el, true, w);
	w[5 + 4 + 2 + 32] = 33; /* session id longer than 32 */
	assert_int_equal(parse(w, n, &h), SNI_MALFORMED);

	n = build(e, el, true, w);
	w[n - el - 1] ^= 1; /* extensions length off by one */
	assert_int_equal(parse(w, n, &h), SNI_MALFORMED);

	memcpy(e + el, e, el); /* server_name twice */
	n = build(e, 2 * el, true, w);
	assert_int_equal(parse(w, n, &h), SNI_MALFORMED);

	e[0] = 0, e[1] = 0, e[2] = 0, e[3] = 0; /* empty server_name extension */
	n = build(e, 4, true, w);
	assert_int_equal(parse(w, n, &h), SNI_MALFORMED);

	/* a non-handshake record inside a split ClientHello */
	el = sni_ext("a.example.com", 13, e);
	n = build(e, el, true, w);
	n = reframe(w, n, 10, e);
	e[15] = 23;
	assert_int_equal(parse(e, n, &h), SNI_MALFORMED);
}

static void test_size_limits(void **state)
{
	static uint8_t w[MAXBUF], e[MAXBUF], re[MAXBUF];
	struct sni_hello h;
	size_t n, base = build(NULL, 0, true, w) - 5; /* message with an empty extension block */
	size_t pad = SNI_MAX_HELLO - base;	      /* one padding extension fills the limit */

	e[0] = 0, e[1] = 21, e[2] = (uint8_t)((pad - 4) >> 8), e[3] = (uint8_t)(pad - 4);
	memset(e + 4, 0, pad - 4);
	n = build(e, pad, true, w);
	assert_int_equal(n, SNI_MAX_WIRE);
	assert_int_equal(parse(w, n, &h), SNI_DONE);

	/* one byte more in one record: the record itself exceeds 2^14 */
	e[3]++;
	n = build(e, pad + 1, true, w);
	assert_int_equal(parse(w, n, &h), SNI_MALFORMED);
	/* ... and split into records, the handshake length is over the limit: refused as soon
	 * as the 4-byte handshake header is in, long before the rest arrives */
	n = reframe(w, n, 1000, re);
	assert_int_equal(parse(re, 9, &h), SNI_TOO_BIG);

	/* a hello within the message limit whose record headers push it over the wire limit */
	e[3]--;
	n = build(e, pad, true, w);
	n = reframe(w, n, 100, re);
	assert_int_equal(parse(re, n, &h), SNI_TOO_BIG);
	assert_int_equal(parse(re, SNI_MAX_WIRE + 1, &h), SNI_TOO_BIG);
}

static void test_server_name_extension(void **state)
{
	/* unknown name type first, then host_name: the host_name counts */
	static const uint8_t two[] = { 0, 12, 7, 0, 2, 'x', 'y', 0, 0, 4, 'a', '.', 'b', 'c' };
	static const uint8_t dup[] = { 0, 12, 0, 0, 2, 'x', 'y', 0, 0, 4, 'a', '.', 'b', 'c' };
	static const uint8_t zero[] = { 0, 3, 0, 0, 0 };
	char out[256];
	bool invalid;

	assert_int_equal(sni_server_name(two, sizeof(two), out, sizeof(out), &invalid), 1);
	assert_string_equal(out, "a.bc");
	assert_int_equal(sni_server_name(dup, sizeof(dup), out, sizeof(out), &invalid), -1);
	assert_int_equal(sni_server_name(zero, sizeof(zero), out, sizeof(out), &invalid), -1);
	assert_int_equal(sni_server_name(two, 5, out, sizeof(out), &invalid), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_captured_whole_and_every_prefix),
		cmocka_unit_test(test_captured_reframed),
		cmocka_unit_test(test_trailing_bytes_are_not_the_hello),
		cmocka_unit_test(test_built_hellos),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_size_limits),
		cmocka_unit_test(test_server_name_extension),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
