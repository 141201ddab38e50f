/* test_sockmap — what a sockmap direction forwarded, what waits, and when it may pass its FIN on
 * (user/sockmap_drain.h); which connections the backlog guard resets (user/sockmap_budget.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "sockmap_budget.h"
#include "sockmap_drain.h"

#define MIB (UINT64_C(1) << 20)

/* 100 bytes read by ktlsd before the handover, 900 forwarded by the kernel, FIN received. */
static struct sockmap_dir done(void)
{
	return (struct sockmap_dir){ .user = 100,
				     .wbase = 5000,
				     .src_rcvd = 100 + 900 + 1,
				     .dst_written = 5900,
				     .src_eof = true };
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
		.user = 517, .wbase = 1, .src_rcvd = 517 + (3u << 20), .dst_written = 1 + (1u << 20)
	};

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
		.user = 517, .wbase = 518, .src_rcvd = 518, .dst_written = 518, .src_eof = true
	};

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

/* ---- the backlog budget ---- */

static uint64_t sum(const uint64_t *b, size_t n)
{
	uint64_t t = 0;

	for (size_t i = 0; i < n; i++)
		t += b[i];
	return t;
}

/* Connections i (their backlogs in b) that sockmap_budget_pick resets, as a bit mask. */
static unsigned picked(const uint64_t *b, size_t n, uint64_t total, uint64_t budget,
		       uint64_t elsewhere)
{
	struct sockmap_backlog v[16];
	unsigned mask = 0;
	size_t k;

	for (size_t i = 0; i < n; i++)
		v[i] = (struct sockmap_backlog){ b[i], (void *)(uintptr_t)(i + 1) };
	k = sockmap_budget_pick(v, n, total, budget, elsewhere);
	for (size_t i = 0; i < k; i++)
		mask |= 1u << ((uintptr_t)v[i].conn - 1);
	for (size_t i = 1; i < n; i++)
		assert_true(v[i - 1].bytes >= v[i].bytes); /* sorted, largest first */
	return mask;
}

/* The finding: 100 connections of 60 MiB each (6000 MiB) all stayed, since none passed a
 * 64 MiB floor. Now 92 of them are reset and the 8 left fit in 512 MiB. */
static void test_budget_no_per_connection_floor(void **state)
{
	struct sockmap_backlog v[100];
	size_t k;

	(void)state;
	for (size_t i = 0; i < 100; i++)
		v[i] = (struct sockmap_backlog){ 60 * MIB, NULL };
	k = sockmap_budget_pick(v, 100, 100 * 60 * MIB, 512 * MIB, 0);
	assert_int_equal(k, 92);
	assert_true((100 - k) * 60 * MIB <= 512 * MIB);
}

/* The largest first, and only as many as it takes: 4 + 2 + 9 + 1 = 16 MiB over 10 MiB resets the
 * 9 MiB one; the three left (7 MiB) fit. */
static void test_budget_largest_first_until_it_fits(void **state)
{
	const uint64_t b[] = { 4 * MIB, 2 * MIB, 9 * MIB, 1 * MIB };

	(void)state;
	assert_int_equal(picked(b, 4, sum(b, 4), 10 * MIB, 0), 1u << 2);
	/* 5 MiB: the 9 and the 4 go, 3 MiB stay. */
	assert_int_equal(picked(b, 4, sum(b, 4), 5 * MIB, 0), 1u << 2 | 1u << 0);
	/* Over by one byte still resets one. */
	assert_int_equal(picked(b, 4, sum(b, 4), sum(b, 4) - 1, 0), 1u << 2);
}

static void test_budget_within_is_left_alone(void **state)
{
	const uint64_t b[] = { 400 * MIB, 112 * MIB };

	(void)state;
	assert_int_equal(picked(b, 2, 512 * MIB, 512 * MIB, 0), 0); /* exactly at the budget */
	assert_int_equal(picked(b, 0, 600 * MIB, 512 * MIB, 0), 0); /* nothing of ours */
	/* One connection may take the whole budget; past it, it is the one reset. */
	assert_int_equal(picked(b, 1, 400 * MIB, 512 * MIB, 0), 0);
	assert_int_equal(picked(b, 1, 513 * MIB, 512 * MIB, 0), 1);
}

/* The total counts other workers' connections: this worker resets its own largest while the
 * total is over, but not one smaller than the largest another worker holds (that worker resets
 * its own first), and never a connection holding nothing. */
static void test_budget_other_workers(void **state)
{
	const uint64_t b[] = { 3 * MIB, 6 * MIB, 0, 5 * MIB };

	(void)state;
	/* 14 MiB here, 20 elsewhere, budget 24: elsewhere holds at most 4 MiB, so the 6 goes,
	 * then the 5 (28 > 24, then 23). */
	assert_int_equal(picked(b, 4, 34 * MIB, 24 * MIB, 4 * MIB), 1u << 1 | 1u << 3);
	/* Elsewhere holds 8 MiB: it goes first, nothing here yet. */
	assert_int_equal(picked(b, 4, 34 * MIB, 24 * MIB, 8 * MIB), 0);
	/* A tie: both sides may reset their 6 MiB (one reset more than needed, never fewer). */
	assert_int_equal(picked(b, 4, 34 * MIB, 30 * MIB, 6 * MIB), 1u << 1);
	/* Over the budget by other workers' bytes alone, with nothing here but idle connections. */
	assert_int_equal(picked((const uint64_t[]){ 0, 0 }, 2, 40 * MIB, 24 * MIB, 0), 0);
	/* A total read before our own readings grew is smaller than them: it cannot underflow. */
	assert_int_equal(picked(b, 4, 5 * MIB, 1 * MIB, 0), 1u << 1);
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
		cmocka_unit_test(test_budget_no_per_connection_floor),
		cmocka_unit_test(test_budget_largest_first_until_it_fits),
		cmocka_unit_test(test_budget_within_is_left_alone),
		cmocka_unit_test(test_budget_other_workers),
	};

	return cmocka_run_group_tests_name("sockmap", tests, NULL, NULL);
}
