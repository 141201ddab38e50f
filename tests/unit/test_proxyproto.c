/* Unit tests for proxyproto: the forms real connections rarely produce (IPv6, mixed families,
 * maximal TLVs, an unknown version). The integration tests parse real headers end to end. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>

#include <cmocka.h>

#include "proxyproto.h"

static void addr6(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	s->sin6_family = AF_INET6;
	s->sin6_port = htons((unsigned short)port);
	inet_pton(AF_INET6, ip, &s->sin6_addr);
}

static void addr4(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	struct sockaddr_in *s = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	s->sin_family = AF_INET;
	s->sin_port = htons((unsigned short)port);
	inet_pton(AF_INET, ip, &s->sin_addr);
}

static void test_v1_ipv6_and_unknown(void **state)
{
	struct sockaddr_storage a, b;
	struct proxyproto_info in = { .src = &a, .dst = &b };
	unsigned char out[PROXYPROTO_MAX + 1];
	int n;

	addr6(&a, "2001:db8::1", 40000);
	addr6(&b, "::1", 443);
	n = proxyproto_encode(1, &in, out);
	out[n] = 0;
	assert_string_equal((char *)out, "PROXY TCP6 2001:db8::1 ::1 40000 443\r\n");
	addr4(&b, "127.0.0.1", 443); /* families differ: the protocol's UNKNOWN */
	n = proxyproto_encode(1, &in, out);
	out[n] = 0;
	assert_string_equal((char *)out, "PROXY UNKNOWN\r\n");
}

static void test_v2_ipv6_layout(void **state)
{
	struct sockaddr_storage a, b;
	struct proxyproto_info in = { .src = &a, .dst = &b };
	unsigned char out[PROXYPROTO_MAX];
	int n;

	addr6(&a, "2001:db8::1", 40000);
	addr6(&b, "::1", 443);
	n = proxyproto_encode(2, &in, out);
	assert_int_equal(n, 16 + 36);
	assert_memory_equal(out, "\r\n\r\n\0\r\nQUIT\n", 12);
	assert_int_equal(out[12], 0x21);
	assert_int_equal(out[13], 0x21);
	assert_int_equal(out[14] << 8 | out[15], 36);
	assert_int_equal(out[16 + 32] << 8 | out[16 + 33], 40000);
	assert_int_equal(out[16 + 34] << 8 | out[16 + 35], 443);
}

static void test_v2_maximal_tlvs_fit(void **state)
{
	char big[400];
	struct sockaddr_storage a, b;
	struct proxyproto_info in = { .src = &a,
				      .dst = &b,
				      .tls = true,
				      .alpn = big,
				      .sni = big,
				      .version = big,
				      .cipher = big,
				      .client_cn = big };
	unsigned char out[PROXYPROTO_MAX];
	int n;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	addr6(&a, "::1", 1);
	addr6(&b, "::1", 2);
	n = proxyproto_encode(2, &in, out);
	assert_true(n > 16 && n <= PROXYPROTO_MAX); /* whole TLVs that fit; the rest left out */
	assert_int_equal(out[14] << 8 | out[15], n - 16); /* the length field covers all TLVs */
	big[20] = 0;					  /* realistic sizes: everything fits */
	n = proxyproto_encode(2, &in, out);
	assert_int_equal(n, 16 + 36 + 2 * (3 + 20) + 8 + 3 * (3 + 20));
}

static void test_unknown_version(void **state)
{
	struct sockaddr_storage a = { 0 };
	struct proxyproto_info in = { .src = &a, .dst = &a };
	unsigned char out[PROXYPROTO_MAX];

	assert_int_equal(proxyproto_encode(3, &in, out), -EINVAL);
	assert_int_equal(proxyproto_encode(2, &in, out), 16); /* non-IP: UNSPEC, no addresses */
	assert_int_equal(out[13], 0x00);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_ipv6_and_unknown),
		cmocka_unit_test(test_v2_ipv6_layout),
		cmocka_unit_test(test_v2_maximal_tlvs_fit),
		cmocka_unit_test(test_unknown_version),
	};

	return cmocka_run_group_tests_name("proxyproto", tests, NULL, NULL);
}
