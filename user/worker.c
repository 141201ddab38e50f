#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define RING_ENTRIES 4096
#define TICK_MS 100
#define LIMIT_LOG_INTERVAL_MS 5000

uint64_t worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void worker_conn_added(struct worker *w, struct conn *c)
{
	c->prev = NULL;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
}

void worker_conn_removed(struct worker *w, struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
}

static int listen_socket(const struct cfg_listener *l)
{
	const struct cfg_addr *a = &l->bind;
	int fd, one = 1, zero = 0;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	/* "*:port" and "[::]:port" take IPv4 too, whatever net.ipv6.bindv6only says. */
	if (a->ss.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr) &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 4096) < 0)
		goto fail;
	return fd;
fail:
	log_err("listener %s: cannot listen on %s: %s", l->name, a->text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int worker_init(struct worker *w, unsigned id, struct state *st)
{
	int ret = 0;

	memset(w, 0, sizeof(*w));
	w->id = id;
	w->wake_fd = -1;
	w->st = state_get(st);
	w->n_slots = st->cfg->n_listeners;
	w->slots = aligned_alloc(16, sizeof(*w->slots) * w->n_slots);
	ENSURE(w->slots, ENOMEM);
	for (size_t i = 0; i < w->n_slots; i++)
		w->slots[i] = (struct listen_slot){ .w = w, .l = &st->listeners[i], .fd = -1 };
	for (size_t i = 0; i < w->n_slots; i++)
		ENSURE((w->slots[i].fd = listen_socket(st->listeners[i].cfg)) >= 0, EADDRNOTAVAIL);
	w->wake_fd = eventfd(0, EFD_CLOEXEC);
	ENSURE(w->wake_fd >= 0, errno);
	GUARD(ring_init(&w->ring, RING_ENTRIES));
	w->ring_ok = true;
cleanup:
	return ret;
}

static void arm_accept(struct worker *w, struct listen_slot *s)
{
	struct io_uring_sqe *sqe;

	if (s->armed || s->fd < 0 || w->drain_deadline_ms)
		return;
	sqe = ring_sqe(&w->ring);
	io_uring_prep_multishot_accept(sqe, s->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(s, OP_ACCEPT));
	s->armed = true;
}

static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = ring_sqe(&w->ring);

	io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, ring_ud(w, OP_WAKE));
}

static void arm_tick(struct worker *w)
{
	struct io_uring_sqe *sqe = ring_sqe(&w->ring);

	w->tick_ts.tv_sec = 0;
	w->tick_ts.tv_nsec = TICK_MS * 1000000LL;
	io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(w, OP_TICK));
}

static void limit_log(struct worker *w, const char *fmt, const char *name, const char *detail)
{
	if (w->now_ms - w->last_limit_log_ms < LIMIT_LOG_INTERVAL_MS && w->last_limit_log_ms)
		return;
	w->last_limit_log_ms = w->now_ms;
	log_warn(fmt, name, detail);
}

static void on_accept(struct worker *w, struct listen_slot *s, int res, unsigned flags)
{
	struct listener_rt *l = s->l;

	if (!(flags & IORING_CQE_F_MORE))
		s->armed = false;
	if (res < 0) {
		/* EMFILE/ENFILE/ENOMEM: retried from the next tick rather than spinning. */
		if (res != -ECANCELED)
			limit_log(w, "listener %s: accept: %s (retrying)", l->cfg->name,
				  strerror(-res));
		return;
	}
	if (w->drain_deadline_ms) {
		close(res);
		return;
	}
	if (atomic_fetch_add(&l->conns, 1) >= l->cfg->max_connections) {
		atomic_fetch_sub(&l->conns, 1);
		close(res);
		limit_log(w, "listener %s: max_connections reached (%s); refusing new connections",
			  l->cfg->name, "see listeners[].max_connections");
		return;
	}
	if (conn_accept(w, l, res) < 0)
		limit_log(w, "listener %s: accept: %s", l->cfg->name, "out of memory");
	if (!s->armed)
		arm_accept(w, s);
}

static void start_drain(struct worker *w)
{
	if (w->drain_deadline_ms)
		return;
	w->drain_deadline_ms = w->now_ms + w->st->cfg->drain_timeout_ms + 1;
	for (size_t i = 0; i < w->n_slots; i++) {
		struct listen_slot *s = &w->slots[i];

		if (s->armed)
			ring_cancel(&w->ring, ring_ud(s, OP_ACCEPT));
		if (s->fd >= 0)
			close(s->fd); /* the ring keeps its own reference until the cancel lands */
		s->fd = -1;
	}
}

static void on_tick(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		conn_check_timeout(c, w->now_ms);
	}
	for (size_t i = 0; i < w->n_slots; i++)
		arm_accept(w, &w->slots[i]);
	if (w->drain_deadline_ms && w->now_ms >= w->drain_deadline_ms) {
		for (c = w->conns; c; c = next) {
			next = c->next;
			conn_abort(c, "drain deadline");
		}
	}
	if (w->drain_deadline_ms && w->n_conns == 0)
		w->stop = true;
	else
		arm_tick(w);
}

static void dispatch(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *obj = ring_ud_obj(ud);

	switch (ring_ud_op(ud)) {
	case OP_NONE:
		return;
	case OP_ACCEPT:
		on_accept(w, obj, cqe->res, cqe->flags);
		return;
	case OP_TICK:
		on_tick(w);
		return;
	case OP_WAKE:
		start_drain(w);
		return;
	default:
		conn_complete(obj, ring_ud_op(ud), cqe->res);
		return;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct io_uring_cqe *cqe;
	unsigned head, n;

	w->now_ms = worker_now_ms();
	for (size_t i = 0; i < w->n_slots; i++)
		arm_accept(w, &w->slots[i]);
	arm_wake(w);
	arm_tick(w);
	while (!w->stop) {
		int r = io_uring_submit_and_wait(&w->ring.uring, 1);

		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			log_err("worker %u: io_uring_submit_and_wait: %s", w->id, strerror(-r));
			break;
		}
		w->now_ms = worker_now_ms();
		n = 0;
		io_uring_for_each_cqe(&w->ring.uring, head, cqe)
		{
			dispatch(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring.uring, n);
	}
	return NULL;
}

int worker_start(struct worker *w)
{
	int r = pthread_create(&w->thread, NULL, worker_main, w);

	if (r)
		log_err("worker %u: pthread_create: %s", w->id, strerror(r));
	return -r;
}

void worker_drain(struct worker *w)
{
	uint64_t one = 1;

	if (write(w->wake_fd, &one, sizeof(one)) < 0)
		log_err("worker %u: wake: %s", w->id, strerror(errno));
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void worker_destroy(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		conn_abort(c, "shutdown");
	}
	for (size_t i = 0; w->slots && i < w->n_slots; i++)
		if (w->slots[i].fd >= 0)
			close(w->slots[i].fd);
	free(w->slots);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	if (w->ring_ok)
		ring_exit(&w->ring);
	state_put(w->st);
}
