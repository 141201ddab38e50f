/* conn_testutil.h — drives connections (user/conn_fsm.h) without a ring: a struct conn_io that
 * queues every operation, and a loop that carries them out on real loopback sockets (recv, send,
 * poll and connect, each non-blocking) or lets a test complete one by hand with any result (a
 * timeout, a cancel, an error). The daemon's own state is built from a JSON config with the
 * fixtures' certificates, as main.c builds it. Used by test_conn.c. */
#ifndef KTLSD_CONN_TESTUTIL_H
#define KTLSD_CONN_TESTUTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "conn_fsm.h"
#include "dp_sockmap.h"
#include "ring.h"
#include "state.h"

enum fop_kind { FOP_RECV, FOP_SEND, FOP_POLL, FOP_CONNECT, FOP_TIMER, FOP_TIMEOUT };

struct fop {
	enum fop_kind kind;
	int fd;
	void *buf;
	uint32_t len;
	unsigned events;
	uint64_t ud;
	struct sockaddr_storage sa;
	socklen_t salen;
	bool cancelled;
};

#define FOP_MAX 256
static struct fop fq[FOP_MAX];
static unsigned fq_n, fq_closes, fq_cancels;

static void fq_push(struct fop o)
{
	assert_true(fq_n < FOP_MAX);
	fq[fq_n++] = o;
}

static void f_recv(void *ctx, int fd, void *buf, uint32_t len, uint64_t ud)
{
	fq_push((struct fop){ .kind = FOP_RECV, .fd = fd, .buf = buf, .len = len, .ud = ud });
}
static void f_send(void *ctx, int fd, const void *buf, uint32_t len, uint64_t ud)
{
	fq_push(
	    (struct fop){ .kind = FOP_SEND, .fd = fd, .buf = (void *)buf, .len = len, .ud = ud });
}
static void f_poll(void *ctx, int fd, unsigned events, uint64_t ud)
{
	fq_push((struct fop){ .kind = FOP_POLL, .fd = fd, .events = events, .ud = ud });
}
static void f_cancel(void *ctx, uint64_t ud)
{
	fq_cancels++;
	for (unsigned i = 0; i < fq_n; i++)
		if (fq[i].ud == ud)
			fq[i].cancelled = true;
}
static void f_connect(void *ctx, int fd, const struct sockaddr *sa, socklen_t len,
		      const struct __kernel_timespec *ts, uint64_t ud_connect, uint64_t ud_timer)
{
	struct fop o = { .kind = FOP_CONNECT, .fd = fd, .ud = ud_connect, .salen = len };

	memcpy(&o.sa, sa, len);
	fq_push(o);
	fq_push((struct fop){ .kind = FOP_TIMER, .ud = ud_timer });
}
static void f_timeout(void *ctx, const struct __kernel_timespec *ts, uint64_t ud)
{
	fq_push((struct fop){ .kind = FOP_TIMEOUT, .ud = ud });
}
static void f_close(void *ctx, int fd)
{
	fq_closes++;
	close(fd);
}

static const struct conn_io fake_io = {
	.recv = f_recv,
	.send = f_send,
	.poll = f_poll,
	.cancel = f_cancel,
	.connect = f_connect,
	.timeout = f_timeout,
	.close = f_close,
};

static struct conn_env env = { .io = &fake_io, .id = 0 };

/* Delivers the completion of queued operation i with res (removing it first: the completion may
 * queue more). */
static void fq_complete(unsigned i, int res)
{
	uint64_t ud = fq[i].ud;

	fq[i] = fq[--fq_n];
	if (ring_ud_op(ud) == OP_SOCKMAP) {
		dp_sockmap_check(ring_ud_obj(ud), UINT64_MAX);
		return;
	}
	conn_complete(ring_ud_obj(ud), ring_ud_op(ud), res);
}

/* Fires every timer queued (the sockmap tier's backlog check). */
static void fire_timers(void)
{
	for (unsigned i = 0; i < fq_n;)
		if (fq[i].kind == FOP_TIMEOUT)
			fq_complete(i, -ETIME);
		else
			i++;
}

/* The queued operation of conn c tagged op, or -1. */
static int fq_find(const struct conn *c, unsigned op)
{
	for (unsigned i = 0; i < fq_n; i++)
		if (fq[i].ud == ring_ud(c, op))
			return (int)i;
	return -1;
}

/* Tries operation i on its socket; true when it completed (the socket was ready). Timers never
 * fire by themselves: a test completes them. */
static bool fq_try(unsigned i)
{
	struct fop *o = &fq[i];
	struct pollfd p = { .fd = o->fd, .events = (short)o->events };
	ssize_t n;

	if (o->cancelled) {
		fq_complete(i, -ECANCELED);
		return true;
	}
	switch (o->kind) {
	case FOP_RECV:
		n = recv(o->fd, o->buf, o->len, MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			return false;
		fq_complete(i, n < 0 ? -errno : (int)n);
		return true;
	case FOP_SEND:
		n = send(o->fd, o->buf, o->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN)
			return false;
		fq_complete(i, n < 0 ? -errno : (int)n);
		return true;
	case FOP_POLL:
		if (poll(&p, 1, 0) < 1)
			return false;
		fq_complete(i, p.revents);
		return true;
	case FOP_CONNECT: {
		/* The connect, then its timer (cancelled by the connect's completion). */
		int r = connect(o->fd, (struct sockaddr *)&o->sa, o->salen) < 0 ? -errno : 0;
		uint64_t timer = 0;

		for (unsigned k = 0; k < fq_n; k++)
			if (fq[k].kind == FOP_TIMER && ring_ud_obj(fq[k].ud) == ring_ud_obj(o->ud))
				timer = fq[k].ud;
		fq_complete(i, r);
		for (unsigned k = 0; k < fq_n; k++)
			if (fq[k].ud == timer) {
				fq_complete(k, -ECANCELED);
				break;
			}
		return true;
	}
	case FOP_TIMER:
	case FOP_TIMEOUT:
		return false;
	}
	return false;
}

/* Carries out every operation that can complete, until none can (or rounds run out). */
static void run(void)
{
	for (int round = 0; round < 1000; round++) {
		bool progress = false;

		for (unsigned i = 0; i < fq_n; i++)
			if (fq_try(i)) {
				progress = true;
				break; /* the queue changed */
			}
		if (!progress)
			return;
	}
	fail_msg("the connection never settled");
}

/* ---- sockets and the daemon's state ---- */

static int listen_any(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	*a = (struct sockaddr_in){ .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)a, &len), 0);
	return fd;
}

/* A connected pair over loopback TCP: *peer is the remote end a test plays, the return value the
 * end the daemon would have accepted. */
static int tcp_pair(int lfd, const struct sockaddr_in *a, int *peer)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), s;

	assert_int_equal(connect(c, (const struct sockaddr *)a, sizeof(*a)), 0);
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(s >= 0);
	*peer = c;
	return s;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* The state of config text json, as main.c builds it. */
static struct state *state_from(const char *json)
{
	char dir[] = "/tmp/ktlsd-test-conn-XXXXXX", path[96];
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;
	struct state *st = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/k.json", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(json, f);
	fclose(f);
	if (config_load(path, &cfg, &errs) < 0 || state_build(cfg, &st, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			print_error("%s\n", errs.msgs[i]);
		fail_msg("config");
	}
	config_put(cfg);
	unlink(path);
	rmdir(dir);
	return st;
}

#endif
