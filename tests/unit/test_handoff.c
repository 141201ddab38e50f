/* test_handoff — the handoff from OpenSSL to the kernel never frees a buffer the kernel is still
 * writing: a connection whose handshake is done while a recv is still in flight into cin (the
 * state pump_handshake leaves when its last flight waited for room in cout) is built here around
 * a real TLS 1.3 session and a real io_uring, and handoff_prepare must cancel that recv and wait
 * rather than go on to install keys and free cin. buf_release of a pinned buffer aborts. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "conn.h"
#include "handoff.h"
#include "ring.h"
#include "tls_pair_testutil.h"

static const struct tls_case tls13 = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", KTLS_AES_GCM_128,
				       0 };

struct fixture {
	struct pair p;
	struct ring ring;
	struct conn_env env;
	struct conn c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	pair_new(&f->p, &tls13, true);
	assert_int_equal(ring_init(&f->ring, 8), 0);
	assert_int_equal(ring_start(&f->ring), 0);
	f->env.io = &conn_io_ring;
	f->env.io_ctx = &f->ring;
	f->c.env = &f->env;
	f->c.tls.ssl = f->p.s;
	f->c.cfd = f->c.bfd = -1;
	f->c.tls.ktls_candidate = true;
	f->c.state = CONN_TIER_SELECT;
	f->c.cin.cap = f->c.cout.cap = f->c.bin.cap = f->c.bout.cap = 4096;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ring_exit(&f->ring);
	f->c.cin.pins = 0;
	buf_release(&f->c.cin);
	pair_free(&f->p);
	free(f);
	return 0;
}

/* The SQEs queued and not yet submitted: what handoff_prepare asked of the ring. */
static unsigned queued(struct ring *r, struct io_uring_sqe **last)
{
	unsigned n = io_uring_sq_ready(&r->uring);

	*last = n ? &r->uring.sq.sqes[(r->uring.sq.sqe_tail - 1) & *r->uring.sq.kring_mask] : NULL;
	return n;
}

static void test_recv_in_flight_is_cancelled_and_waited_for(void **state)
{
	struct fixture *f = *state;
	struct io_uring_sqe *sqe;
	struct ktls_keys keys;
	struct ktls_seq seq;
	enum handoff_result r;

	/* What conn_post_recv leaves: the recv's bit and a pin on cin. */
	assert_int_equal(buf_ready(&f->c.cin), 0);
	f->c.cin.pins = 1;
	f->c.inflight = 1u << OP_CRECV;

	assert_int_equal(handoff_prepare(&f->c, &keys, &seq), HANDOFF_WAIT);
	assert_int_equal(queued(&f->ring, &sqe), 1);
	assert_int_equal(sqe->opcode, IORING_OP_ASYNC_CANCEL);
	assert_int_equal(sqe->addr, ring_ud(&f->c, OP_CRECV));
	assert_non_null(f->c.cin.data); /* nothing freed under the kernel's feet */
	assert_non_null(f->c.tls.ssl);

	/* Still in flight on the next pump: still waiting, and one cancel is enough. */
	assert_int_equal(handoff_prepare(&f->c, &keys, &seq), HANDOFF_WAIT);
	assert_int_equal(queued(&f->ring, &sqe), 1);

	/* The recv completed (cancelled): the handoff goes on, to whichever end this host allows
	 * (no kTLS here: userspace), but it no longer waits. */
	f->c.inflight = 0;
	f->c.cin.pins = 0;
	r = handoff_prepare(&f->c, &keys, &seq);
	assert_int_not_equal(r, HANDOFF_WAIT);
	if (r == HANDOFF_DONE)
		ktls_keys_wipe(&keys);
}

static void test_releasing_a_pinned_buffer_aborts(void **state)
{
	struct buf b = { .cap = 64 };
	int status;
	pid_t pid;

	assert_int_equal(buf_ready(&b), 0);
	b.pins = 1;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(2); /* the assertion's message is expected */
		buf_release(&b);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	b.pins = 0;
	buf_release(&b);
	assert_null(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_recv_in_flight_is_cancelled_and_waited_for,
						setup, teardown),
		cmocka_unit_test(test_releasing_a_pinned_buffer_aborts),
	};

	return cmocka_run_group_tests_name("handoff", tests, make_cert, free_cert);
}
