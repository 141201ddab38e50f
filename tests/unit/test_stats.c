/* Unit tests for stats: the registry by name, connection slots and limits, tier moves, the
 * handshake histogram and failure reasons, and counts that stay exact across threads. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stats.h"

static int teardown(void **state)
{
	stats_exit();
	return 0;
}

static void count(struct stats_listener *sl, void *arg)
{
	(*(int *)arg)++;
}

static void test_registry_keeps_one_entry_per_name(void **state)
{
	struct stats_listener *a = stats_listener_get("web"), *b = stats_listener_get("api");
	int n = 0;

	assert_non_null(a);
	assert_ptr_not_equal(a, b);
	assert_ptr_equal(stats_listener_get("web"), a); /* what a reload finds again */
	assert_string_equal(a->name, "web");
	stats_for_each(count, &n);
	assert_int_equal(n, 2);
}

static void test_reserve_refuses_past_max_and_counts_it(void **state)
{
	struct stats_listener *sl = stats_listener_get("lim");

	assert_true(stats_conn_reserve(sl, 2));
	assert_true(stats_conn_reserve(sl, 2));
	assert_false(stats_conn_reserve(sl, 2));
	assert_int_equal(stats_read(&sl->limit[STATS_LIMIT_MAX_CONNECTIONS]), 1);
	assert_int_equal(atomic_load(&sl->active), 2);
	stats_conn_unreserve(sl); /* could not be set up */
	assert_int_equal(atomic_load(&sl->active), 1);
	assert_int_equal(atomic_load(&sl->active_tier[KTLSD_TIER_NONE]), 1);
	stats_conn_tier(sl, KTLSD_TIER_USERSPACE);
	assert_int_equal(atomic_load(&sl->active_tier[KTLSD_TIER_NONE]), 0);
	assert_int_equal(atomic_load(&sl->active_tier[KTLSD_TIER_USERSPACE]), 1);
	assert_int_equal(stats_read(&sl->total_tier[KTLSD_TIER_USERSPACE]), 1);
	stats_conn_closed(sl, KTLSD_TIER_USERSPACE);
	assert_int_equal(atomic_load(&sl->active), 0);
	assert_int_equal(atomic_load(&sl->active_tier[KTLSD_TIER_USERSPACE]), 0);
	/* one that never forwarded: counted on tier none */
	assert_true(stats_conn_reserve(sl, 2));
	stats_conn_tier(sl, KTLSD_TIER_NONE);
	stats_conn_closed(sl, KTLSD_TIER_NONE);
	assert_int_equal(stats_read(&sl->total_tier[KTLSD_TIER_NONE]), 1);
	assert_int_equal(atomic_load(&sl->active_tier[KTLSD_TIER_NONE]), 0);
}

static void test_histogram_buckets_and_sum(void **state)
{
	struct stats_listener *sl = stats_listener_get("hist");

	stats_handshake(sl, STATS_HS_OK, 0, NULL);
	stats_handshake(sl, STATS_HS_OK, 1000, NULL);	  /* le=0.001 is inclusive */
	stats_handshake(sl, STATS_HS_OK, 3000, NULL);	  /* le=0.005 */
	stats_handshake(sl, STATS_HS_OK, 20000000, NULL); /* +Inf */
	assert_int_equal(stats_read(&sl->hs_bucket[0]), 2);
	assert_int_equal(stats_read(&sl->hs_bucket[2]), 1);
	assert_int_equal(stats_read(&sl->hs_bucket[STATS_HS_BUCKETS - 1]), 1);
	assert_int_equal(stats_read(&sl->hs_sum_us), 20004000);
	assert_int_equal(stats_read(&sl->handshakes[STATS_HS_OK]), 4);
}

static void test_reasons_are_bounded(void **state)
{
	struct stats_listener *sl = stats_listener_get("reasons");
	char r[32];

	for (int i = 0; i < STATS_REASONS + 8; i++) {
		snprintf(r, sizeof(r), "reason %d", i);
		stats_handshake(sl, STATS_HS_FAILED, 0, r);
	}
	stats_handshake(sl, STATS_HS_FAILED, 0, "reason 3");
	stats_handshake(sl, STATS_HS_TIMEOUT, 0, NULL);
	assert_string_equal(atomic_load(&sl->reasons[3].name), "reason 3");
	assert_int_equal(stats_read(&sl->reasons[3].n), 2);
	assert_string_equal(atomic_load(&sl->reasons[STATS_REASONS - 1].name), "reason 31");
	assert_int_equal(stats_read(&sl->reasons_other), 8 + 1); /* the last 8 and "unknown" */
	assert_int_equal(stats_read(&sl->handshakes[STATS_HS_FAILED]), STATS_REASONS + 9);
	assert_int_equal(stats_read(&sl->handshakes[STATS_HS_TIMEOUT]), 1);
	assert_int_equal(stats_read(&sl->hs_bucket[0]), 0); /* failures are not latencies */
}

static void test_names(void **state)
{
	for (int t = 0; t < KTLSD_TIER_N; t++)
		assert_int_equal(stats_tier_by_name(stats_tier_name(t)), t);
	assert_int_equal(stats_tier_by_name(NULL), KTLSD_TIER_NONE);
	assert_int_equal(stats_tier_by_name("warp"), KTLSD_TIER_NONE);
	assert_string_equal(stats_hs_name(STATS_HS_ABORTED), "aborted");
	assert_string_equal(stats_limit_name(STATS_LIMIT_OPEN_FILES), "open_files");
	stats_reload(STATS_RELOAD_OK);
	stats_reload(STATS_RELOAD_FAILED);
	stats_reload(STATS_RELOAD_FAILED);
	assert_int_equal(stats_reloads(STATS_RELOAD_FAILED), 2);
}

static void *adder(void *arg)
{
	for (int i = 0; i < 200000; i++)
		stats_bytes(arg, 1, 2);
	return NULL;
}

static void test_counts_stay_exact_across_threads(void **state)
{
	struct stats_listener *sl = stats_listener_get("threads");
	pthread_t t[4];

	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, adder, sl);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(stats_read(&sl->bytes_c2b), 800000);
	assert_int_equal(stats_read(&sl->bytes_b2c), 1600000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_registry_keeps_one_entry_per_name, teardown),
		cmocka_unit_test_teardown(test_reserve_refuses_past_max_and_counts_it, teardown),
		cmocka_unit_test_teardown(test_histogram_buckets_and_sum, teardown),
		cmocka_unit_test_teardown(test_reasons_are_bounded, teardown),
		cmocka_unit_test_teardown(test_names, teardown),
		cmocka_unit_test_teardown(test_counts_stay_exact_across_threads, teardown),
	};

	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
