/* ring — io_uring setup and submission. It knows nothing of TLS or connections: callers tag each
 * operation with ring_ud(object, op) and dispatch completions on ring_ud_op(). */
#ifndef KTLSD_RING_H
#define KTLSD_RING_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <liburing.h>

#include "err.h"

/* Objects passed to ring_ud are at least 16-byte aligned: the low 4 bits carry the op. */
#define RING_OP_BITS 4u
#define RING_OP_MASK ((1u << RING_OP_BITS) - 1)

static inline uint64_t ring_ud(const void *obj, unsigned op)
{
	return (uint64_t)(uintptr_t)obj | op;
}
static inline void *ring_ud_obj(uint64_t ud)
{
	return (void *)(uintptr_t)(ud & ~(uint64_t)RING_OP_MASK);
}
static inline unsigned ring_ud_op(uint64_t ud)
{
	return (unsigned)(ud & RING_OP_MASK);
}

struct ring {
	struct io_uring uring;
	bool disabled; /* created disabled: ring_start() by the thread that will use it */
	int wait_fd;   /* under valgrind only: an eventfd the ring signals (ring_wait), else -1 */
	uint64_t
	    submitted_ns; /* CLOCK_MONOTONIC when ring_wait returned or ring_flush_due submitted */
};

/* How long queued SQEs may wait while the worker handles a batch of completions. A full
 * handshake costs 0.1-0.5 ms of CPU (RSA-2048 signing most of it): without this, the server
 * flights of a batch of 8 ClientHellos all left after the last one was signed, and the worker
 * sat idle while its clients waited (docs/notes/io_uring.md, "Submitting within a batch"). */
#define RING_FLUSH_NS 50000u

static inline uint64_t ring_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int ring_init(struct ring *r, unsigned entries) __must_check;
/* Called once by the thread that submits to the ring, before its first submission. */
int ring_start(struct ring *r) __must_check;
void ring_exit(struct ring *r);
int ring_wait_polled(struct ring *r);

/* Submits the queued SQEs and waits until at least one completion is ready; returns the number
 * submitted or -errno, like io_uring_submit_and_wait(). */
static inline int ring_wait(struct ring *r)
{
	int ret;

	if (__builtin_expect(r->wait_fd >= 0, 0))
		ret = ring_wait_polled(r);
	else
		ret = io_uring_submit_and_wait(&r->uring, 1);
	r->submitted_ns = ring_clock_ns();
	return ret;
}

/* Between two completions of a batch: submits what is queued once RING_FLUSH_NS have passed
 * since the last submission, so the sends of work done early in a batch do not wait for the
 * rest of it. One clock read (vDSO) when something is queued. Not after a batch's last
 * completion: ring_wait's own submission follows at once, and a second system call there cost
 * 3-4 % more CPU per handshake. */
static inline void ring_flush_due(struct ring *r)
{
	uint64_t now;

	if (io_uring_sq_ready(&r->uring) == 0)
		return;
	now = ring_clock_ns();
	if (now - r->submitted_ns < RING_FLUSH_NS)
		return;
	io_uring_submit(&r->uring);
	r->submitted_ns = now;
}

/* A free SQE, submitting queued ones first when the queue is full. Never returns NULL. */
struct io_uring_sqe *ring_sqe(struct ring *r);
/* Cancels every in-flight operation tagged ud. */
void ring_cancel(struct ring *r, uint64_t ud);

#endif
