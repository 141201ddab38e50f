#include <errno.h>
#include <string.h>

#include "log.h"
#include "ring.h"

int ring_init(struct ring *r, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	/* A CQ ring four times the SQ ring: completions may outnumber submissions per turn. */
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 4;
	ret = io_uring_queue_init_params(entries, &r->uring, &p);
	if (ret < 0)
		log_err("io_uring_queue_init(%u): %s", entries, strerror(-ret));
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
