#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "ring.h"

int ring_init(struct ring *r, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	/* A CQ ring four times the SQ ring: completions may outnumber submissions per turn.
	 * One thread submits and reaps (its worker), so completions need not interrupt it: with
	 * DEFER_TASKRUN the kernel runs their task work in a batch when the worker waits, instead
	 * of at each completion. The ring is created here but used by the worker's thread, which
	 * becomes its single issuer when it enables it (ring_start). Kernels before 6.1 lack the
	 * flags: then the ring is an ordinary one. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_R_DISABLED;
	p.cq_entries = entries * 4;
	ret = io_uring_queue_init_params(entries, &r->uring, &p);
	r->disabled = ret == 0;
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 4;
		ret = io_uring_queue_init_params(entries, &r->uring, &p);
	}
	if (ret < 0)
		log_err("io_uring_queue_init(%u): %s", entries, strerror(-ret));
	return ret;
}

int ring_start(struct ring *r)
{
	/* io_uring_enable_rings() is declared by liburing 2.3 but not exported: the syscall. */
	int ret = r->disabled ? (int)syscall(__NR_io_uring_register, r->uring.ring_fd,
					     IORING_REGISTER_ENABLE_RINGS, NULL, 0)
			      : 0;

	if (ret < 0) {
		ret = -errno;
		log_err("io_uring_register(IORING_REGISTER_ENABLE_RINGS): %s", strerror(errno));
	}
	r->disabled = false;
	return ret;
}

void ring_exit(struct ring *r)
{
	io_uring_queue_exit(&r->uring);
}

struct io_uring_sqe *ring_sqe(struct ring *r)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&r->uring)))
		io_uring_submit(&r->uring);
	return sqe;
}

void ring_cancel(struct ring *r, uint64_t ud)
{
	struct io_uring_sqe *sqe = ring_sqe(r);

	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, 0); /* completions with user_data 0 are ignored */
}
