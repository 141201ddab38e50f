#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "admit.h"
#include "conn.h"
#include "conn_fsm.h"
#include "dp_sockmap.h"
#include "dp_userspace.h"
#include "log.h"
#include "ratelog.h"
#include "vg.h"
#include "stats.h"
#include "stats_conn.h"
#include "worker.h"

#define RING_ENTRIES 4096
#define TICK_MS 100

uint64_t worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int worker_listen_socket(const struct cfg_listener *l, char *err, size_t errlen)
{
	const struct cfg_addr *a = &l->bind;
	int fd, one = 1, zero = 0, ret;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    /* accepted sockets inherit it (tcp_create_openreq_child copies the listener): no
	     * setsockopt per connection */
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
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
	ret = -errno;
	if (err)
		snprintf(err, errlen, "listener %s: cannot listen on %s: %s", l->name, a->text,
			 strerror(-ret));
	else
		log_err("listener %s: cannot listen on %s: %s", l->name, a->text, strerror(-ret));
	if (fd >= 0)
		close(fd);
	return ret;
}

static struct listen_slot *slot_new(struct worker *w, int fd)
{
	struct listen_slot *s = aligned_alloc(16, sizeof(*s));

	if (s)
		*s = (struct listen_slot){ .w = w, .fd = fd };
	return s;
}

/* Stops accepting on s. Its multishot accept may still complete: the slot is freed when the last
 * completion arrives (on_accept), so no completion ever finds freed memory. */
static void slot_retire(struct worker *w, struct listen_slot *s)
{
	if (s->armed)
		ring_cancel(&w->ring, ring_ud(s, OP_ACCEPT));
	if (s->fd >= 0)
		close(s->fd); /* the ring keeps its own reference until the cancel lands */
	s->fd = -1;
	if (!s->armed) {
		free(s);
		return;
	}
	s->dying = true;
	s->next_dying = w->dying;
	w->dying = s;
}

static void slot_free_dying(struct worker *w, struct listen_slot *s)
{
	struct listen_slot **pp;

	for (pp = &w->dying; *pp; pp = &(*pp)->next_dying) {
		if (*pp == s) {
			*pp = s->next_dying;
			break;
		}
	}
	free(s);
}

int worker_init(struct worker *w, unsigned id, struct state *st)
{
	int ret = 0, fd;

	memset(w, 0, sizeof(*w));
	w->id = id;
	w->wake_fd = -1;
	ENSURE(pthread_mutex_init(&w->mbox_lock, NULL) == 0, ENOMEM);
	w->mbox_ok = true;
	w->st = state_get(st);
	w->n_slots = st->cfg->n_listeners;
	w->slots = calloc(w->n_slots, sizeof(*w->slots));
	ENSURE(w->slots, ENOMEM);
	for (size_t i = 0; i < w->n_slots; i++) {
		GUARD(fd = worker_listen_socket(st->listeners[i].cfg, NULL, 0));
		w->slots[i] = slot_new(w, fd);
		if (!w->slots[i])
			close(fd);
		ENSURE(w->slots[i], ENOMEM);
		w->slots[i]->l = &st->listeners[i];
	}
	w->wake_fd = eventfd(0, EFD_CLOEXEC);
	ENSURE(w->wake_fd >= 0, errno);
	GUARD(ring_init(&w->ring, RING_ENTRIES));
	w->ring_ok = true;
	w->env.io = &conn_io_ring;
	w->env.io_ctx = &w->ring;
	w->env.id = id;
cleanup:
	return ret;
}

static void arm_accept(struct worker *w, struct listen_slot *s)
{
	struct io_uring_sqe *sqe;

	if (!s || s->armed || s->fd < 0 || w->drain_deadline_ms)
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

/* Closes a connection a limit refused, before any handshake: counted and logged (rate-limited). */
static void refuse(struct worker *w, struct listener_rt *l, int fd, enum stats_limit why)
{
	close(fd);
	stats_limit(l->stats, why);
	admit_log_refusal(l->cfg->name, why, w->env.now_ms);
}

/* Every limit a new connection must pass, cheapest first; then the connection is set up. */
static void admit(struct worker *w, struct listener_rt *l, int fd)
{
	struct sockaddr_storage peer = { 0 };
	socklen_t plen = sizeof(peer);
	struct admit_hold hold;
	enum stats_limit why;

	/* The limit counts the listener's connections under every state a reload left alive. */
	if (!stats_conn_reserve(l->stats, l->cfg->max_connections)) {
		close(fd);
		admit_log_refusal(l->cfg->name, STATS_LIMIT_MAX_CONNECTIONS, w->env.now_ms);
		return;
	}
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
		peer.ss_family = AF_UNSPEC; /* reset already: still accounted like any other */
	why = admit_connection(w->st->cfg, &peer, l->cfg->protocol == CFG_PROTO_TLS, w->env.now_ms,
			       &hold);
	if (why != STATS_LIMIT_N) {
		stats_conn_unreserve(l->stats);
		refuse(w, l, fd, why);
		return;
	}
	atomic_fetch_add(&l->conns, 1);
	if (conn_accept(&w->env, w->st, l, fd, &peer, &hold) < 0) {
		admit_release(&hold);
		stats_conn_unreserve(l->stats);
		stats_limit(l->stats, STATS_LIMIT_MEMORY);
		admit_log_refusal(l->cfg->name, STATS_LIMIT_MEMORY, w->env.now_ms);
	}
}

static void on_accept(struct worker *w, struct listen_slot *s, int res, unsigned flags)
{
	static struct ratelog accept_errors;
	struct listener_rt *l = s->l;
	uint64_t left_out;

	if (!(flags & IORING_CQE_F_MORE))
		s->armed = false;
	if (s->dying) {
		/* A connection that raced the listener's removal or drain: it is refused. */
		if (res >= 0)
			close(res);
		if (!s->armed)
			slot_free_dying(w, s);
		return;
	}
	if (res < 0) {
		/* EMFILE/ENFILE/ENOMEM: retried from the next tick rather than spinning. */
		if (res == -EMFILE || res == -ENFILE) {
			stats_limit(l->stats, STATS_LIMIT_OPEN_FILES);
			admit_log_refusal(l->cfg->name, STATS_LIMIT_OPEN_FILES, w->env.now_ms);
		} else if (res != -ECANCELED &&
			   ratelog_allow(&accept_errors, w->env.now_ms, &left_out)) {
			log_err(
			    "listener %s: accept: %s (retrying; %llu more accept errors since the "
			    "last line)",
			    l->cfg->name, strerror(-res), (unsigned long long)left_out);
		}
		return;
	}
	if (w->drain_deadline_ms) {
		close(res);
		return;
	}
	admit(w, l, res);
	if (!s->armed)
		arm_accept(w, s);
}

static void start_drain(struct worker *w)
{
	if (w->drain_deadline_ms)
		return;
	w->drain_deadline_ms = w->env.now_ms + w->st->cfg->drain_timeout_ms + 1;
	for (size_t i = 0; i < w->n_slots; i++) {
		if (w->slots[i])
			slot_retire(w, w->slots[i]);
		w->slots[i] = NULL;
	}
}

static void on_tick(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->env.conns; c; c = next) {
		next = c->next;
		stats_conn_flush(c);
		conn_check_timeout(c, w->env.now_ms);
	}
	dp_userspace_tick_done();
	for (size_t i = 0; i < w->n_slots; i++)
		arm_accept(w, w->slots[i]);
	if (w->drain_deadline_ms && w->env.now_ms >= w->drain_deadline_ms) {
		for (c = w->env.conns; c; c = next) {
			next = c->next;
			conn_abort(c, CONN_END_DRAIN_DEADLINE);
		}
	}
	if (w->drain_deadline_ms && w->env.n_conns == 0)
		w->stop = true;
	else
		arm_tick(w);
}

static void on_wake(struct worker *w, int res)
{
	if (res > 0)
		vg_kernel_wrote(&w->wake_buf, (size_t)res);
	if (atomic_load(&w->drain_req))
		start_drain(w);
	worker_mbox_run(w);
	if (res < 0 && res != -EINTR && res != -EAGAIN) {
		log_err("worker %u: wake: %s", w->id, strerror(-res));
		if (res == -ECANCELED || res == -EBADF)
			return; /* the ring or the eventfd is going away */
	}
	arm_wake(w);
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
		on_wake(w, cqe->res);
		return;
	case OP_SOCKMAP:
		dp_sockmap_check(&w->env, w->st->cfg->limits.sockmap_backlog);
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

	w->env.now_ms = worker_now_ms();
	if (ring_start(&w->ring) < 0)
		w->stop = true;
	for (size_t i = 0; i < w->n_slots; i++)
		arm_accept(w, w->slots[i]);
	arm_wake(w);
	arm_tick(w);
	while (!w->stop) {
		int r = ring_wait(&w->ring);

		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			log_err("worker %u: waiting for completions: %s", w->id, strerror(-r));
			break;
		}
		w->env.now_ms = worker_now_ms();
		n = 0;
		io_uring_for_each_cqe (&w->ring.uring, head, cqe) {
			/* Before the next completion, not after the last: ring_wait submits those.
			 */
			if (n)
				ring_flush_due(&w->ring);
			dispatch(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring.uring, n);
	}
	worker_mbox_close(w);
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

	atomic_store(&w->drain_req, true);
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
	struct listen_slot *s;

	for (c = w->env.conns; c; c = next) {
		next = c->next;
		conn_abort(c, CONN_END_SHUTDOWN);
	}
	if (w->ring_ok)
		ring_exit(&w->ring); /* no completion can arrive after this */
	for (size_t i = 0; w->slots && i < w->n_slots; i++) {
		if (w->slots[i] && w->slots[i]->fd >= 0)
			close(w->slots[i]->fd);
		free(w->slots[i]);
	}
	free(w->slots);
	while ((s = w->dying)) {
		w->dying = s->next_dying;
		free(s);
	}
	if (w->mbox_ok) {
		worker_mbox_close(w);
		pthread_mutex_destroy(&w->mbox_lock);
	}
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	state_put(w->st);
}

/* ---- handlers for the mailbox (worker_msg.c calls them on this thread) ---- */

/* Takes the slot of the listener named name out of the current slots, or NULL. */
static struct listen_slot *slot_take(struct worker *w, const char *name)
{
	for (size_t i = 0; i < w->n_slots; i++) {
		struct listen_slot *s = w->slots[i];

		if (s && strcmp(s->l->cfg->name, name) == 0) {
			w->slots[i] = NULL;
			return s;
		}
	}
	return NULL;
}

/* The slot for listener i of the new state: the kept one, the socket the reload opened, or, when
 * this worker lost its socket in the meantime, one opened here. NULL when even that fails. */
static struct listen_slot *adopt_slot(struct worker *w, struct worker_listen *wl,
				      const struct cfg_listener *cfg)
{
	struct listen_slot *s = wl->keep ? slot_take(w, wl->keep) : NULL;
	int fd = wl->fd;

	wl->fd = -1;
	if (s) {
		if (fd >= 0)
			close(fd);
		return s;
	}
	if (fd < 0 && (fd = worker_listen_socket(cfg, NULL, 0)) < 0)
		return NULL;
	if (!(s = slot_new(w, fd)))
		close(fd);
	return s;
}

void worker_adopt(struct worker *w, struct worker_msg *m)
{
	struct state *st = m->adopt.st;
	size_t n = st->cfg->n_listeners;
	struct listen_slot **slots = calloc(n, sizeof(*slots));

	if (!slots) {
		m->ret = -ENOMEM;
		log_err("worker %u: reload: out of memory; still serving the previous config",
			w->id);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		slots[i] = adopt_slot(w, &m->adopt.lsn[i], st->listeners[i].cfg);
		if (slots[i])
			slots[i]->l = &st->listeners[i];
		else
			m->ret = -EADDRNOTAVAIL;
	}
	/* Listeners the new state does not have: stop accepting; their connections carry on. */
	for (size_t i = 0; i < w->n_slots; i++)
		if (w->slots[i])
			slot_retire(w, w->slots[i]);
	free(w->slots);
	w->slots = slots;
	w->n_slots = n;
	state_put(w->st);
	w->st = st; /* connections accepted from now on take this state */
	m->adopt.st = NULL;
	for (size_t i = 0; i < n; i++)
		arm_accept(w, slots[i]);
}

void worker_drain_listener(struct worker *w, struct worker_msg *m)
{
	struct listen_slot *s = slot_take(w, m->drain.name);

	m->ret = s ? 0 : -ENOENT;
	if (s)
		slot_retire(w, s);
	for (struct conn *c = w->env.conns; c; c = c->next)
		if (strcmp(c->l->cfg->name, m->drain.name) == 0)
			m->drain.conns++;
}
