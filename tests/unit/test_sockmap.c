/* test_sockmap — when a sockmap direction may pass its FIN on (user/sockmap_drain.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "sockmap_drain.h"

/* 100 bytes read by ktlsd before the handover, 900 redirected, FIN received, all written. */
static struct sockmap_dir done(void)
{
	return (struct sockmap_dir){.user = 100,
				    .wbase = 5000,
				    .redir = 900,
				    .src_rcvd = 100 + 900 + 1,
				    .dst_written = 5900,
				    .src_eof = true};
}

static void test_drained(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	assert_true(sockmap_dir_drained(&d));
}

static void test_no_fin_yet(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.src_eof = false;
	d.src_rcvd = 1000;
	assert_false(sockmap_dir_drained(&d));
}

/* The FIN was seen but the verdict has not taken the last 10 bytes from the source. */
static void test_source_not_consumed(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.src_rcvd += 10;
	assert_false(sockmap_dir_drained(&d));
}

/* Redirected bytes still wait in the destination's psock queue. */
static void test_destination_behind(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.dst_written -= 1;
	assert_false(sockmap_dir_drained(&d));
}

/* Nothing ever redirected: the client sent its bytes and FIN before the handover. */
static void test_all_before_handover(void **state)
{
	struct sockmap_dir d = {.user = 517,
				.wbase = 518,
				.redir = 0,
				.src_rcvd = 518,
				.dst_written = 518,
				.src_eof = true};

	(void)state;
	assert_true(sockmap_dir_drained(&d));
}

/* A byte counter that wrapped past 2^64 relative to its base still compares exactly. */
static void test_written_wraps(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.wbase = UINT64_MAX - 99;
	d.dst_written = d.wbase + 900;
	assert_true(sockmap_dir_drained(&d));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_drained),
	    cmocka_unit_test(test_no_fin_yet),
	    cmocka_unit_test(test_source_not_consumed),
	    cmocka_unit_test(test_destination_behind),
	    cmocka_unit_test(test_all_before_handover),
	    cmocka_unit_test(test_written_wraps),
	};

	return cmocka_run_group_tests_name("sockmap", tests, NULL, NULL);
}
