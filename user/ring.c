#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "ring.h"
#include "vg.h"

int ring_init(struct ring *r, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	r->wait_fd = -1;
	/* A CQ ring four times the SQ ring: completions may outnumber submissions per turn.
	 * One thread submits and reaps (its worker), so completions need not interrupt it: with
	 * DEFER_TASKRUN the kernel runs their task work in a batch when the worker waits, instead
	 * of at each completion. The ring is created here but used by the worker's thread, which
	 * becomes its single issuer when it enables it (ring_start). Kernels before 6.1 lack the
	 * flags: then the ring is an ordinary one. So it is under valgrind (ring_start). */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_R_DISABLED;
	p.cq_entries = entries * 4;
	ret = vg_running() ? -EINVAL : io_uring_queue_init_params(entries, &r->uring, &p);
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
		return ret;
	}
	r->disabled = false;
	/* Valgrind (3.19 at least) runs one guest thread at a time and lets another run only while
	 * the current one is in a system call it knows may block. io_uring_enter is not one of
	 * them: a worker waiting there for completions keeps the lock and every other thread of the
	 * daemon stops until a completion arrives (docs/notes/io_uring.md, "Waiting for io_uring
	 * completions under valgrind"). Under valgrind the worker
	 * waits in poll() instead, a call valgrind does let block (ring_wait_polled), on an
	 * ordinary ring: with DEFER_TASKRUN, completions reach the CQ only when the issuer enters
	 * the ring, and workers under valgrind missed wake-ups (mailbox calls unanswered). */
	if (vg_running()) {
		r->wait_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (r->wait_fd < 0) {
			ret = -errno;
			log_err("eventfd: %s", strerror(errno));
			return ret;
		}
		ret = io_uring_register_eventfd(&r->uring, r->wait_fd);
		if (ret < 0) {
			log_err("io_uring_register_eventfd: %s", strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* The ring fd polls POLLIN when CQEs are ready; the registered eventfd is signalled as each is
 * posted. poll() watches both, so a completion posted between the check and the poll still wakes
 * it (docs/notes/io_uring.md, "Waiting for io_uring completions under valgrind"). */
int ring_wait_polled(struct ring *r)
{
	struct pollfd pfd[2] = {
		{ .fd = r->uring.ring_fd, .events = POLLIN },
		{ .fd = r->wait_fd, .events = POLLIN },
	};
	uint64_t signals;
	int submitted, ret;

	/* Submits, and reaps what is ready; never blocks. */
	submitted = io_uring_submit_and_get_events(&r->uring);
	if (submitted < 0)
		return submitted;
	while (io_uring_cq_ready(&r->uring) == 0) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			return -errno;
		/* Cleared before the ring is looked at: a signal after this is not lost. */
		if (read(r->wait_fd, &signals, sizeof(signals)) < 0 && errno != EAGAIN)
			return -errno;
		ret = io_uring_get_events(&r->uring);
		if (ret < 0)
			return ret;
	}
	return submitted;
}

void ring_exit(struct ring *r)
{
	io_uring_queue_exit(&r->uring);
	if (r->wait_fd >= 0)
		close(r->wait_fd);
	r->wait_fd = -1;
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
