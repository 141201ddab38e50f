/* conn_io.c — struct conn_io over io_uring (see conn_io.h). */
#include <unistd.h>

#include "conn_io.h"
#include "ring.h"

static void ring_recv(void *ctx, int fd, void *buf, uint32_t len, uint64_t ud)
{
	struct io_uring_sqe *sqe = ring_sqe(ctx);

	io_uring_prep_recv(sqe, fd, buf, len, 0);
	io_uring_sqe_set_data64(sqe, ud);
}

static void ring_send(void *ctx, int fd, const void *buf, uint32_t len, uint64_t ud)
{
	struct io_uring_sqe *sqe = ring_sqe(ctx);

	io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud);
}

static void ring_poll(void *ctx, int fd, unsigned events, uint64_t ud)
{
	struct io_uring_sqe *sqe = ring_sqe(ctx);

	io_uring_prep_poll_add(sqe, fd, events);
	io_uring_sqe_set_data64(sqe, ud);
}

static void ring_cancel_ud(void *ctx, uint64_t ud)
{
	ring_cancel(ctx, ud);
}

/* The connect and its linked timeout: the timeout cancels the connect when it fires first. */
static void ring_connect(void *ctx, int fd, const struct sockaddr *sa, socklen_t len,
			 const struct __kernel_timespec *ts, uint64_t ud_connect, uint64_t ud_timer)
{
	struct io_uring_sqe *sqe = ring_sqe(ctx);

	io_uring_prep_connect(sqe, fd, sa, len);
	io_uring_sqe_set_data64(sqe, ud_connect);
	sqe->flags |= IOSQE_IO_LINK;
	sqe = ring_sqe(ctx);
	io_uring_prep_link_timeout(sqe, (struct __kernel_timespec *)ts, 0);
	io_uring_sqe_set_data64(sqe, ud_timer);
}

static void ring_timeout(void *ctx, const struct __kernel_timespec *ts, uint64_t ud)
{
	struct io_uring_sqe *sqe = ring_sqe(ctx);

	io_uring_prep_timeout(sqe, (struct __kernel_timespec *)ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud);
}

static void ring_close(void *ctx, int fd)
{
	(void)ctx;
	close(fd);
}

const struct conn_io conn_io_ring = {
	.recv = ring_recv,
	.send = ring_send,
	.poll = ring_poll,
	.cancel = ring_cancel_ud,
	.connect = ring_connect,
	.timeout = ring_timeout,
	.close = ring_close,
};
