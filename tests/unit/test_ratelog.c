/* Unit tests for ratelog: one line per interval, the count of those left out, exact under threads.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ratelog.h"

static void test_one_line_per_interval_with_the_count_left_out(void **state)
{
	struct ratelog r = { 0 };
	uint64_t left = 99;

	assert_true(ratelog_allow(&r, 5000, &left));
	assert_int_equal(left, 0);
	for (int i = 0; i < 7; i++)
		assert_false(ratelog_allow(&r, 5000 + (uint64_t)i * 100, &left));
	assert_false(ratelog_allow(&r, 5000 + RATELOG_INTERVAL_MS - 1, &left));
	assert_true(ratelog_allow(&r, 5000 + RATELOG_INTERVAL_MS, &left));
	assert_int_equal(left, 8);
	assert_true(ratelog_allow(&r, 100000, &left));
	assert_int_equal(left, 0);
}

static struct ratelog shared;
static atomic_uint_least64_t lines, reported;

static void *hammer(void *arg)
{
	uint64_t left;

	for (uint64_t t = 0; t < 100000; t++) {
		if (ratelog_allow(&shared, t / 10, &left)) {
			atomic_fetch_add(&lines, 1);
			atomic_fetch_add(&reported, left);
		}
	}
	return NULL;
}

/* Every event is either a line or counted in the next line's number: none is lost or doubled. */
static void test_threads_lose_no_event(void **state)
{
	pthread_t th[4];
	uint64_t left = 0;

	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, hammer, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	assert_true(ratelog_allow(&shared, UINT64_MAX / 2, &left));
	assert_int_equal(atomic_load(&lines) + atomic_load(&reported) + left, 4 * 100000);
	assert_true(atomic_load(&lines) <= 4 * (100000 / 10 / RATELOG_INTERVAL_MS + 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_line_per_interval_with_the_count_left_out),
		cmocka_unit_test(test_threads_lose_no_event),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
