/* conn_io — the I/O seam under connections: every kernel operation a connection or a tier waits
 * for goes through one of these calls, tagged ud = ring_ud(object, op), and its result comes back
 * as one completion with that tag (conn_complete). conn_io.c implements it over the worker's
 * io_uring; the unit tests (tests/unit/test_conn.c) implement it with a queue they complete by
 * hand, so the connection code runs without a ring and with synthetic results. Nothing here
 * knows what a connection is. */
#ifndef KTLSD_CONN_IO_H
#define KTLSD_CONN_IO_H

#include <stdint.h>
#include <sys/socket.h>

#include <linux/time_types.h>

struct conn_io {
	/* One recv(2) into buf; completes with the byte count, 0 at EOF, or -errno. */
	void (*recv)(void *ctx, int fd, void *buf, uint32_t len, uint64_t ud);
	/* One send(2) with MSG_NOSIGNAL; completes with the bytes taken or -errno. */
	void (*send)(void *ctx, int fd, const void *buf, uint32_t len, uint64_t ud);
	/* A one-shot poll; completes with the revents mask or -errno. */
	void (*poll)(void *ctx, int fd, unsigned events, uint64_t ud);
	/* Cancels every operation tagged ud; each then completes with -ECANCELED (or its result,
	 * if it finished first). */
	void (*cancel)(void *ctx, uint64_t ud);
	/* connect(2) with a deadline: two completions, the connect's (0 or -errno; -ECANCELED when
	 * ts passed first) and the timer's. *ts must stay valid until both have arrived. */
	void (*connect)(void *ctx, int fd, const struct sockaddr *sa, socklen_t len,
			const struct __kernel_timespec *ts, uint64_t ud_connect, uint64_t ud_timer);
	/* A timer; completes once after *ts (which must stay valid until then). */
	void (*timeout)(void *ctx, const struct __kernel_timespec *ts, uint64_t ud);
	/* Closes fd now (nothing of it may be in flight). */
	void (*close)(void *ctx, int fd);
};

/* The io_uring implementation; ctx is the worker's struct ring. */
extern const struct conn_io conn_io_ring;

#endif
