/* Unit tests for admission limits: the per-source token bucket and handshake cap, the global caps,
 * release, and that the source table stays bounded whatever the number of addresses. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "admit.h"

static struct config cfg;

static int setup(void **state)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.limits.max_connections = 1000000;
	cfg.limits.max_handshakes = 1000000;
	cfg.limits.per_source.burst = 100;
	cfg.limits.per_source.table_size = 64;
	return admit_init(&cfg);
}

static int teardown(void **state)
{
	admit_exit();
	return 0;
}

static struct sockaddr_storage v4(const char *a)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *s = (struct sockaddr_in *)&ss;

	s->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, a, &s->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *a)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

	s->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, a, &s->sin6_addr), 1);
	return ss;
}

static void test_rate_is_a_token_bucket_per_source(void **state)
{
	struct sockaddr_storage a = v4("192.0.2.1"), b = v4("192.0.2.2");
	struct admit_hold h;

	cfg.limits.per_source.rate = 10;
	cfg.limits.per_source.burst = 5;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(admit_connection(&cfg, &a, false, 1000, &h), STATS_LIMIT_N);
		admit_release(&h);
	}
	assert_int_equal(admit_connection(&cfg, &a, false, 1000, &h), STATS_LIMIT_SOURCE_RATE);
	assert_false(h.conn);
	/* another source has its own bucket */
	assert_int_equal(admit_connection(&cfg, &b, false, 1000, &h), STATS_LIMIT_N);
	admit_release(&h);
	/* 10/s: one token back after 100 ms, not before */
	assert_int_equal(admit_connection(&cfg, &a, false, 1050, &h), STATS_LIMIT_SOURCE_RATE);
	assert_int_equal(admit_connection(&cfg, &a, false, 1100, &h), STATS_LIMIT_N);
	admit_release(&h);
	assert_int_equal(admit_connection(&cfg, &a, false, 1100, &h), STATS_LIMIT_SOURCE_RATE);
	/* never more than burst after a long pause */
	for (int i = 0; i < 5; i++) {
		assert_int_equal(admit_connection(&cfg, &a, false, 100000, &h), STATS_LIMIT_N);
		admit_release(&h);
	}
	assert_int_equal(admit_connection(&cfg, &a, false, 100000, &h), STATS_LIMIT_SOURCE_RATE);
	assert_int_equal(admit_connections(), 0);
}

static void test_ipv6_sources_are_slash_64(void **state)
{
	struct sockaddr_storage a = v6("2001:db8:1:2::1"), same = v6("2001:db8:1:2:ffff::9"),
				other = v6("2001:db8:1:3::1"), mapped = v6("::ffff:192.0.2.7"),
				plain = v4("192.0.2.7");
	struct admit_hold h;

	cfg.limits.per_source.rate = 1;
	cfg.limits.per_source.burst = 1;
	assert_int_equal(admit_connection(&cfg, &a, false, 0, &h), STATS_LIMIT_N);
	admit_release(&h);
	assert_int_equal(admit_connection(&cfg, &same, false, 0, &h), STATS_LIMIT_SOURCE_RATE);
	assert_int_equal(admit_connection(&cfg, &other, false, 0, &h), STATS_LIMIT_N);
	admit_release(&h);
	/* an IPv4-mapped address is that IPv4 source */
	assert_int_equal(admit_connection(&cfg, &mapped, false, 0, &h), STATS_LIMIT_N);
	admit_release(&h);
	assert_int_equal(admit_connection(&cfg, &plain, false, 0, &h), STATS_LIMIT_SOURCE_RATE);
}

static void test_handshakes_per_source_and_global(void **state)
{
	struct sockaddr_storage a = v4("198.51.100.1"), b = v4("198.51.100.2");
	struct admit_hold h[4], x;

	cfg.limits.per_source.max_handshakes = 2;
	cfg.limits.max_handshakes = 3;
	assert_int_equal(admit_connection(&cfg, &a, true, 0, &h[0]), STATS_LIMIT_N);
	assert_int_equal(admit_connection(&cfg, &a, true, 0, &h[1]), STATS_LIMIT_N);
	assert_int_equal(admit_connection(&cfg, &a, true, 0, &x), STATS_LIMIT_SOURCE_HANDSHAKES);
	/* plain connections (tcp listeners) are not handshakes */
	assert_int_equal(admit_connection(&cfg, &a, false, 0, &h[3]), STATS_LIMIT_N);
	assert_int_equal(admit_connection(&cfg, &b, true, 0, &h[2]), STATS_LIMIT_N);
	assert_int_equal(admit_connection(&cfg, &b, true, 0, &x), STATS_LIMIT_HANDSHAKES);
	assert_int_equal(admit_handshakes(), 3);
	assert_int_equal(admit_connections(), 4);
	/* a finished handshake frees both slots; the connection stays counted */
	admit_handshake_done(&h[0]);
	admit_handshake_done(&h[0]);
	assert_int_equal(admit_handshakes(), 2);
	assert_int_equal(admit_connection(&cfg, &a, true, 0, &x), STATS_LIMIT_N);
	admit_release(&x);
	for (int i = 0; i < 4; i++)
		admit_release(&h[i]);
	assert_int_equal(admit_handshakes(), 0);
	assert_int_equal(admit_connections(), 0);
}

static void test_total_connections(void **state)
{
	struct sockaddr_storage a = v4("203.0.113.1");
	struct admit_hold h[2], x;

	cfg.limits.max_connections = 2;
	assert_int_equal(admit_connection(&cfg, &a, true, 0, &h[0]), STATS_LIMIT_N);
	assert_int_equal(admit_connection(&cfg, &a, false, 0, &h[1]), STATS_LIMIT_N);
	assert_int_equal(admit_connection(&cfg, &a, true, 0, &x), STATS_LIMIT_TOTAL_CONNECTIONS);
	assert_int_equal(admit_handshakes(), 1);
	admit_release(&h[0]);
	admit_release(&h[1]);
}

/* A million addresses leave the table at its size, and a source that holds handshakes is never
 * evicted: its count is still right when they end. */
static void test_table_is_bounded(void **state)
{
	struct sockaddr_storage a = v4("10.0.0.1"), x;
	struct admit_hold held, h;

	cfg.limits.per_source.rate = 1;
	cfg.limits.per_source.burst = 1;
	cfg.limits.per_source.max_handshakes = 1;
	assert_int_equal(admit_connection(&cfg, &a, true, 0, &held), STATS_LIMIT_N);
	for (uint32_t i = 0; i < 1000000; i++) {
		x = v4("0.0.0.0");
		((struct sockaddr_in *)&x)->sin_addr.s_addr = htonl(0x0b000000 + i);
		admit_connection(&cfg, &x, false, i, &h);
		admit_release(&h);
	}
	assert_true(admit_sources_tracked() <= 64);
	assert_int_equal(admit_connection(&cfg, &a, true, 2000000, &h),
			 STATS_LIMIT_SOURCE_HANDSHAKES);
	admit_release(&held);
	assert_int_equal(admit_connection(&cfg, &a, true, 2000000, &h), STATS_LIMIT_N);
	admit_release(&h);
}

static void test_connections_per_source(void **state)
{
	struct sockaddr_storage a = v4("192.0.2.1"), b = v4("192.0.2.2");
	struct admit_hold h[4], other;

	cfg.limits.per_source.max_connections = 3;
	cfg.limits.per_source.max_handshakes = 10;
	for (int i = 0; i < 3; i++)
		assert_int_equal(admit_connection(&cfg, &a, i == 0, 0, &h[i]), STATS_LIMIT_N);
	assert_int_equal(admit_connection(&cfg, &a, false, 0, &h[3]),
			 STATS_LIMIT_SOURCE_CONNECTIONS);
	assert_int_equal(admit_connection(&cfg, &b, true, 0, &other), STATS_LIMIT_N);
	/* A finished handshake frees its handshake slot, not its connection. */
	admit_handshake_done(&h[0]);
	assert_int_equal(admit_handshakes(), 1);
	assert_int_equal(admit_connection(&cfg, &a, false, 0, &h[3]),
			 STATS_LIMIT_SOURCE_CONNECTIONS);
	admit_release(&h[0]);
	assert_int_equal(admit_connection(&cfg, &a, false, 0, &h[3]), STATS_LIMIT_N);
	for (int i = 1; i < 4; i++)
		admit_release(&h[i]);
	admit_release(&other);
	assert_int_equal(admit_connections(), 0);
	assert_int_equal(admit_handshakes(), 0);
	/* Nothing held any more: all three slots are there again. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(admit_connection(&cfg, &a, false, 0, &h[i]), STATS_LIMIT_N);
	for (int i = 0; i < 3; i++)
		admit_release(&h[i]);
}

/* An entry holding connections is never taken over by another source (its count would be lost):
 * with every entry of the table holding one, a new source goes untracked. */
static void test_an_entry_with_connections_is_kept(void **state)
{
	struct admit_hold h[256], extra;
	char addr[32];
	unsigned held = 0;

	cfg.limits.per_source.max_connections = 1;
	for (unsigned i = 0; i < 256; i++) {
		struct sockaddr_storage a;

		snprintf(addr, sizeof(addr), "198.51.%u.%u", i / 250, i % 250 + 1);
		a = v4(addr);
		assert_int_equal(admit_connection(&cfg, &a, false, 0, &h[i]), STATS_LIMIT_N);
		held++;
	}
	/* Each source tracked holds its one connection: a second from any of them is refused. */
	for (unsigned i = 0; i < held; i++) {
		struct sockaddr_storage a;

		if (!h[i].src)
			continue; /* went untracked: its set was full */
		snprintf(addr, sizeof(addr), "198.51.%u.%u", i / 250, i % 250 + 1);
		a = v4(addr);
		assert_int_equal(admit_connection(&cfg, &a, false, 0, &extra),
				 STATS_LIMIT_SOURCE_CONNECTIONS);
	}
	assert_true(admit_sources_tracked() <= 64);
	for (unsigned i = 0; i < held; i++)
		admit_release(&h[i]);
}

/* With the shipped defaults, a handful of sources holding every handshake they may cannot take
 * the global handshake cap from everyone else: it takes over a hundred. */
static void test_defaults_keep_the_global_cap_from_a_few_sources(void **state)
{
	char dir[] = "/tmp/ktlsd-test-admit-XXXXXX", path[64];
	struct cfg_errors errs = { 0 };
	struct config *def = NULL;
	struct admit_hold *h;
	unsigned sources = 0, n = 0;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/k.json", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"listeners\": [{\"bind\": \"127.0.0.1:8443\", \"certificates\": [\"c\"], "
	      "\"backend\": \"app\"}], \"certificates\": {\"c\": {\"cert\": \"c.pem\", "
	      "\"key\": \"c.key\"}}, \"backends\": {\"app\": {\"servers\": [\"127.0.0.1:1\"]}}}",
	      f);
	fclose(f);
	assert_int_equal(config_load(path, &def, &errs), 0);
	unlink(path);
	rmdir(dir);
	admit_exit();
	assert_int_equal(admit_init(def), 0);
	h = calloc(def->limits.max_handshakes, sizeof(*h));
	assert_non_null(h);
	/* Source after source takes every handshake slot it is given, until the global cap. */
	while (n < def->limits.max_handshakes && sources < 100000) {
		char addr[32];
		struct sockaddr_storage a;

		snprintf(addr, sizeof(addr), "10.%u.%u.%u", sources >> 16 & 255, sources >> 8 & 255,
			 sources & 255);
		a = v4(addr);
		sources++;
		while (n < def->limits.max_handshakes &&
		       admit_connection(def, &a, true, 0, &h[n]) == STATS_LIMIT_N)
			n++;
	}
	assert_true(sources > 100);
	while (n)
		admit_release(&h[--n]);
	free(h);
	config_put(def);
	config_errors_free(&errs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rate_is_a_token_bucket_per_source, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ipv6_sources_are_slash_64, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshakes_per_source_and_global, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_total_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connections_per_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_an_entry_with_connections_is_kept, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
		    test_defaults_keep_the_global_cap_from_a_few_sources, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_is_bounded, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
