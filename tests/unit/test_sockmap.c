/* test_sockmap — what a sockmap direction forwarded, what waits, and when it may pass its FIN on
 * (user/sockmap_drain.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "sockmap_drain.h"

/* 100 bytes read by ktlsd before the handover, 900 forwarded by the kernel, FIN received. */
static struct sockmap_dir done(void)
{
	return (struct sockmap_dir){.user = 100,
				    .wbase = 5000,
				    .src_rcvd = 100 + 900 + 1,
				    .dst_written = 5900,
				    .src_eof = true};
}

static void test_drained(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	assert_true(sockmap_dir_drained(&d));
	assert_int_equal(sockmap_dir_forwarded(&d), 900);
	assert_int_equal(sockmap_dir_pending(&d), 0);
}

/* After ktlsd passed the FIN on, the destination's counter has it as one more byte. */
static void test_fin_passed_on(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.dst_written += 1;
	d.dst_fin = true;
	assert_int_equal(sockmap_dir_forwarded(&d), 900);
	assert_int_equal(sockmap_dir_pending(&d), 0);
}

static void test_no_fin_yet(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.src_eof = false;
	d.src_rcvd = 1000;
	assert_false(sockmap_dir_drained(&d));
}

/* The FIN was seen but 10 bytes have not reached the destination (the source's receive queue or
 * the psock queue holds them). */
static void test_source_not_consumed(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.src_rcvd += 10;
	assert_false(sockmap_dir_drained(&d));
	assert_int_equal(sockmap_dir_pending(&d), 10);
}

/* Redirected bytes still wait in the destination's psock queue. */
static void test_destination_behind(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.dst_written -= 1;
	assert_false(sockmap_dir_drained(&d));
	assert_int_equal(sockmap_dir_pending(&d), 1);
}

/* Mid-transfer, no FIN: 3 MiB received after ktlsd's 517 bytes, 1 MiB of it written out. */
static void test_pending_mid_transfer(void **state)
{
	struct sockmap_dir d = {
	    .user = 517, .wbase = 1, .src_rcvd = 517 + (3u << 20), .dst_written = 1 + (1u << 20)};

	(void)state;
	assert_int_equal(sockmap_dir_forwarded(&d), 1u << 20);
	assert_int_equal(sockmap_dir_pending(&d), 2u << 20);
	assert_false(sockmap_dir_drained(&d));
}

/* The destination was read after more bytes arrived than the source reading showed: nothing is
 * pending, rather than 2^64 - 5. */
static void test_destination_read_later(void **state)
{
	struct sockmap_dir d = done();

	(void)state;
	d.src_eof = false;
	d.src_rcvd = 100 + 895;
	assert_int_equal(sockmap_dir_pending(&d), 0);
}

/* Nothing ever redirected: the client sent its bytes and FIN before the handover. */
static void test_all_before_handover(void **state)
{
	struct sockmap_dir d = {
	    .user = 517, .wbase = 518, .src_rcvd = 518, .dst_written = 518, .src_eof = true};

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
	    cmocka_unit_test(test_fin_passed_on),
	    cmocka_unit_test(test_no_fin_yet),
	    cmocka_unit_test(test_source_not_consumed),
	    cmocka_unit_test(test_destination_behind),
	    cmocka_unit_test(test_pending_mid_transfer),
	    cmocka_unit_test(test_destination_read_later),
	    cmocka_unit_test(test_all_before_handover),
	    cmocka_unit_test(test_written_wraps),
	};

	return cmocka_run_group_tests_name("sockmap", tests, NULL, NULL);
}
