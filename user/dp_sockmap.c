/* dp_sockmap — the sockmap tier for tcp and tls-passthrough listeners: once the backend is
 * connected, both sockets go into the BPF sockhash and the stream verdict (bpf/ktlsd.bpf.c)
 * redirects every byte to the other socket inside the kernel.
 *
 * Handover. The verdict only sees bytes that arrive after a socket joined the map. Bytes ktlsd
 * already read (a PROXY header, the ClientHello of a passthrough connection, early backend data)
 * are sent from its buffers first, and the sockets join the maps only once those sends completed
 * and no receive is in flight, so the redirected bytes follow them in order. Both sockets become
 * redirect targets before either runs the programs (bpfmap_pair_add), so no message can find
 * its partner missing. Bytes that reached a
 * socket but were not read stay in its receive queue; the strparser would take them only at the
 * next arrival, so SO_RCVLOWAT is set after the insertion, which makes TCP signal data-ready and
 * the strparser read the queue at once (Linux 6.18: without it the queued bytes waited for the
 * next segment, see docs/notes/sockmap.md, "Findings").
 *
 * Ends. Redirected bytes never wake ktlsd, so each socket has one io_uring poll for
 * POLLRDHUP (POLLERR and POLLHUP always report). A FIN is passed on with shutdown(SHUT_WR) once
 * the direction drained (sockmap_drain.h), checked on the poll and on every tick; an error or
 * reset on either socket resets the other (SO_LINGER 0) and closes the connection.
 *
 * Counts. What each direction delivered and what still waits in the kernel come from TCP's own
 * counters (sockmap_drain.h), read on a tick when the verdict ran since the last reading (its
 * last_ns in conns) or bytes were still on their way, so an idle connection costs one map
 * lookup per tick. The counts feed the conns entry, the metrics, the idle timeout and the
 * backlog guard.
 *
 * Backlog guard. The kernel gives a sockhash redirect no backpressure (Linux 6.18,
 * docs/notes/sockmap.md, "No backpressure"; the rule: docs/datapath.md, "The sockmap backlog
 * budget"): when a destination reads slower than its source sends, the difference
 * waits in the destination's psock queue, in kernel memory no socket limit covers, and the
 * source's window stays open. limits.sockmap_backlog is a budget for those bytes over every
 * connection of every worker together (backlog_total); while it is exceeded, the largest
 * backlogs are reset until the rest fit (sockmap_budget.h). A connection whose reading found
 * bytes on their way, or moving, joins its worker's hot list, which dp_sockmap_check reads
 * every SOCKMAP_CHECK_MS, then enforces the budget: at 14 Gbit/s (one loopback connection on
 * the development host) the 100 ms tick lets 175 MB arrive between two readings, a third of
 * the default budget; 10 ms lets 17.5 MB. An idle connection is not on the list and costs only
 * its tick's map lookup; one that starts moving is on it from its next tick. */
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>
#include <linux/tcp.h>

#include "bpfmap.h"
#include "conn.h"
#include "conn_log.h"
#include "datapath.h"
#include "dp_sockmap.h"
#include "dp_userspace.h"
#include "ratelog.h"
#include "sockmap_budget.h"
#include "sockmap_drain.h"
#include "state.h"
#include "stats.h"

#define SOCKMAP_CHECK_MS 10

static _Atomic uint64_t backlog_total; /* over every connection of every worker */

/* The largest backlog on each worker's hot list, by worker id, as its last check found it; a
 * worker past the array publishes nothing (it never defers to another, nor another to it). */
#define LARGEST_SLOTS 1024
static _Atomic uint64_t largest[LARGEST_SLOTS];
static atomic_uint largest_used; /* slots [0, largest_used) were ever written */

#define TCP_STATE_CLOSE 7 /* include/net/tcp_states.h; glibc has it only in <netinet/tcp.h> */

struct sockmap_state {
	struct conn *c;
	struct sockmap_state *hot_prev, *hot_next; /* on the worker's hot list when hot */
	uint64_t bcookie;
	struct sockmap_dir dir[2]; /* by enum ktlsd_dir */
	uint64_t measured_ns;	   /* CLOCK_MONOTONIC of the last reading of the counters */
	uint64_t backlog;	   /* this connection's share of backlog_total */
	bool mapped;
	bool cancelling; /* a userspace receive is being cancelled before the handover */
	bool hot;	 /* on env->sockmap_hot */
};

static void release(struct conn *c);

/* Ops: OP_DP1 the client socket's poll, OP_DP2 the backend's. */

static inline int src_fd(const struct conn *c, unsigned d)
{
	return d == KTLSD_DIR_C2B ? c->cfd : c->bfd;
}

static inline int dst_fd(const struct conn *c, unsigned d)
{
	return d == KTLSD_DIR_C2B ? c->bfd : c->cfd;
}

static int tcp_info_of(int fd, struct tcp_info *ti)
{
	socklen_t l = sizeof(*ti);

	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &l) < 0 ? -errno : 0;
}

/* What the socket's write side took so far: acknowledged bytes plus those still queued
 * (write_seq - snd_una). The two come from two calls, and an ACK landing between them moves
 * bytes from the queue to the acknowledged count unseen: the sum then misses them (docs/notes/
 * sockmap.md, "Fixed: a handover baseline short by an ACK"). So the acknowledged count is read
 * again after the queue; when it did not move, snd_una did not either and the sum is exact. */
#define WRITTEN_TRIES 16

static int written(int fd, uint64_t *out)
{
	struct tcp_info ti;
	uint64_t acked;
	int outq = 0, r;

	if ((r = tcp_info_of(fd, &ti)) < 0)
		return r;
	for (unsigned i = 0; i < WRITTEN_TRIES; i++) {
		acked = ti.tcpi_bytes_acked;
		if (ioctl(fd, SIOCOUTQ, &outq) < 0)
			return -errno;
		if ((r = tcp_info_of(fd, &ti)) < 0)
			return r;
		if (ti.tcpi_bytes_acked == acked)
			break;
	}
	/* Still moving after every try (ACKs arriving back to back): the count at hand, short by
	 * at most the last ACK; a direction's reading heals at its next one. */
	*out = acked + (uint64_t)outq;
	return 0;
}

static void set_backlog(struct sockmap_state *st, uint64_t b)
{
	if (b >= st->backlog)
		atomic_fetch_add_explicit(&backlog_total, b - st->backlog, memory_order_relaxed);
	else
		atomic_fetch_sub_explicit(&backlog_total, st->backlog - b, memory_order_relaxed);
	st->backlog = b;
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock of the verdict's bpf_ktime_get_ns */
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Reads direction d's counters: what its source received, what its destination took. */
static int measure_dir(struct conn *c, struct sockmap_state *st, unsigned d)
{
	struct tcp_info ti;
	int r;

	if ((r = tcp_info_of(src_fd(c, d), &ti)) < 0 ||
	    (r = written(dst_fd(c, d), &st->dir[d].dst_written)) < 0)
		return r;
	st->dir[d].src_rcvd = ti.tcpi_bytes_received;
	st->dir[d].dst_fin = c->flags & (d == KTLSD_DIR_C2B ? CF_B_SHUT : CF_C_SHUT);
	return 0;
}

/* Reads both directions and updates the connection's byte counts, its activity and its share of
 * the backlog. Returns whether a count moved. */
static bool account(struct conn *c, struct sockmap_state *st)
{
	uint64_t *bytes[2] = { [KTLSD_DIR_C2B] = &c->bytes_c2b, [KTLSD_DIR_B2C] = &c->bytes_b2c };
	uint64_t rcvd[2] = { st->dir[0].src_rcvd, st->dir[1].src_rcvd };
	uint64_t pending = 0;
	bool moved = false;

	st->measured_ns = monotonic_ns();
	for (unsigned d = KTLSD_DIR_C2B; d <= KTLSD_DIR_B2C; d++) {
		struct sockmap_dir *sd = &st->dir[d];
		uint64_t fwd;

		if (measure_dir(c, st, d) < 0)
			continue;
		fwd = sd->user + sockmap_dir_forwarded(sd);
		if (fwd > *bytes[d]) {
			*bytes[d] = fwd;
			moved = true;
		}
		moved |= sd->src_rcvd != rcvd[d]; /* bytes arrived, even if none went out yet */
		pending += sockmap_dir_pending(sd);
	}
	if (moved)
		c->active_ms = c->env->now_ms;
	set_backlog(st, pending);
	return moved;
}

static void arm_poll(struct conn *c, bool client)
{
	conn_post_poll(c, client ? c->cfd : c->bfd, POLLRDHUP, client ? OP_DP1 : OP_DP2);
}

/* An error or reset on one socket: the other gets a reset too (close with SO_LINGER 0). */
static void reset(struct conn *c, bool client, int err)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(client ? c->bfd : c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	conn_log(c, LOG_DEBUG, "%s socket: %s", client ? "client" : "backend", strerror(err));
	conn_close(
	    c, err == ENOBUFS ? CONN_END_SOCKMAP_BACKLOG
	       : client
		   ? (err == ECONNRESET ? CONN_END_CLIENT_RESET : CONN_END_CLIENT_SOCKET)
		   : (err == ECONNRESET ? CONN_END_BACKEND_RESET : CONN_END_BACKEND_SOCKET_ERROR));
}

static int so_error(int fd)
{
	int err = 0;
	socklen_t l = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		return errno;
	return err;
}

/* Userspace buffers sent, no receive in flight: the sockets can join the map. */
static bool ready_for_map(struct conn *c, struct sockmap_state *st)
{
	conn_post_send(c, false);
	conn_post_send(c, true);
	if (!st->cancelling) {
		conn_cancel(c, OP_CRECV);
		conn_cancel(c, OP_BRECV);
		st->cancelling = true;
	}
	return !buf_len(c->b_tx) && !buf_len(c->c_tx) &&
	       !(c->inflight & (1u << OP_CRECV | 1u << OP_BRECV | 1u << OP_CSEND | 1u << OP_BSEND));
}

/* Puts both sockets in the sockhash. Returns 0 or a negative errno (EOPNOTSUPP: a socket is no
 * longer established, e.g. the client already sent its FIN; the map takes only established
 * sockets). */
static int handover(struct conn *c, struct sockmap_state *st)
{
	struct ktlsd_conn e = {
		.listener = (uint32_t)c->l->index,
		.state = KTLSD_STATE_FORWARDING,
		.tier = KTLSD_TIER_SOCKMAP,
		.backend_cookie = st->bcookie,
		.bytes_c2b = c->bytes_c2b,
		.bytes_b2c = c->bytes_b2c,
		.start_ns = c->start_ms * 1000000ull,
	};
	int one = 1, r;

	st->dir[KTLSD_DIR_C2B].user = c->bytes_c2b;
	st->dir[KTLSD_DIR_B2C].user = c->bytes_b2c;
	st->dir[KTLSD_DIR_C2B].src_eof = c->flags & CF_CIN_EOF;
	st->dir[KTLSD_DIR_B2C].src_eof = c->flags & CF_BIN_EOF;
	if ((r = written(c->bfd, &st->dir[KTLSD_DIR_C2B].wbase)) < 0 ||
	    (r = written(c->cfd, &st->dir[KTLSD_DIR_B2C].wbase)) < 0 ||
	    (r = bpfmap_conn_put(c->acct.cookie, &e)) < 0 ||
	    (r = bpfmap_pair_add(c->cfd, c->acct.cookie, c->bfd, st->bcookie, e.listener)) < 0) {
		bpfmap_conn_del(c->acct.cookie);
		return r;
	}
	st->mapped = true;
	conn_log(
	    c, LOG_DEBUG,
	    "both sockets in the sockhash after %llu bytes client → backend and %llu backend → "
	    "client in userspace",
	    (unsigned long long)c->bytes_c2b, (unsigned long long)c->bytes_b2c);
	/* Bytes already queued on either socket: have the strparser read them now. */
	setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	setsockopt(c->bfd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	if (!st->dir[KTLSD_DIR_C2B].src_eof)
		arm_poll(c, true);
	if (!st->dir[KTLSD_DIR_B2C].src_eof)
		arm_poll(c, false);
	c->active_ms = c->env->now_ms;
	return 0;
}

/* A socket whose poll ended at its FIN is watched here for a later reset. */
static bool check_reset(struct conn *c, bool client)
{
	struct tcp_info ti;
	int fd = client ? c->cfd : c->bfd, err;

	if (conn_busy(c, client ? OP_DP1 : OP_DP2) || (c->flags & (client ? CF_C_SHUT : CF_B_SHUT)))
		return false;
	if (tcp_info_of(fd, &ti) < 0 || ti.tcpi_state != TCP_STATE_CLOSE)
		return false;
	err = so_error(fd);
	reset(c, client, err ? err : ECONNRESET);
	return true;
}

static void check_drain(struct conn *c, struct sockmap_state *st)
{
	if (check_reset(c, true) || check_reset(c, false))
		return;
	for (unsigned d = KTLSD_DIR_C2B; d <= KTLSD_DIR_B2C; d++) {
		bool to_client = d == KTLSD_DIR_B2C;

		if (!st->dir[d].src_eof || (c->flags & (to_client ? CF_C_SHUT : CF_B_SHUT)))
			continue;
		if (measure_dir(c, st, d) == 0 && sockmap_dir_drained(&st->dir[d]))
			conn_shutdown_wr(c, to_client);
	}
	if (conn_both_done(c))
		conn_close(c, CONN_END_CLOSED);
}

static void pump(struct conn *c)
{
	struct sockmap_state *st = c->dp_data;
	int r;

	if (!st->mapped) {
		if (!ready_for_map(c, st))
			return;
		if ((r = handover(c, st)) < 0) {
			/* Rare: the sockets changed state while ktlsd's buffers drained. */
			conn_log(
			    c, LOG_INFO,
			    "the sockets cannot join the sockhash (%s); forwarding the rest in "
			    "userspace",
			    strerror(-r));
			release(c);
			conn_set_tier(c, &dp_userspace);
			c->dp->pump(c);
			return;
		}
	}
	check_drain(c, st);
}

/* Publishes the connection's counts in its conns entry, keeping the verdict's last_ns unless
 * this reading is newer (so the next tick reads the counters once more and then rests). */
static void publish(struct conn *c, struct sockmap_state *st, struct ktlsd_conn *e)
{
	e->bytes_c2b = c->bytes_c2b;
	e->bytes_b2c = c->bytes_b2c;
	if (e->last_ns < st->measured_ns)
		e->last_ns = st->measured_ns;
	if (bpfmap_conn_put(c->acct.cookie, e) < 0)
		return; /* the entry keeps its older counts until they move again */
}

/* ---- the backlog guard ---- */

static void arm_check(struct conn_env *env)
{
	if (env->sockmap_armed)
		return;
	env->sockmap_ts.tv_sec = 0;
	env->sockmap_ts.tv_nsec = SOCKMAP_CHECK_MS * 1000000LL;
	env->io->timeout(env->io_ctx, &env->sockmap_ts, ring_ud(env, OP_SOCKMAP));
	env->sockmap_armed = true;
}

/* On the worker's hot list while bytes were on their way at the last reading or moving. */
static void set_hot(struct conn *c, struct sockmap_state *st, bool hot)
{
	struct conn_env *env = c->env;

	if (hot == st->hot)
		return;
	if (hot) {
		st->hot_prev = NULL;
		st->hot_next = env->sockmap_hot;
		if (env->sockmap_hot)
			env->sockmap_hot->hot_prev = st;
		env->sockmap_hot = st;
		arm_check(env);
	} else {
		if (st->hot_prev)
			st->hot_prev->hot_next = st->hot_next;
		else
			env->sockmap_hot = st->hot_next;
		if (st->hot_next)
			st->hot_next->hot_prev = st->hot_prev;
		st->hot_prev = st->hot_next = NULL;
	}
	st->hot = hot;
}

/* What this worker tells the others: the largest backlog on its hot list. */
static void publish_largest(struct conn_env *env)
{
	uint64_t max = 0;
	unsigned used;

	if (env->id >= LARGEST_SLOTS)
		return;
	for (struct sockmap_state *st = env->sockmap_hot; st; st = st->hot_next)
		if (st->backlog > max)
			max = st->backlog;
	atomic_store_explicit(&largest[env->id], max, memory_order_relaxed);
	used = atomic_load_explicit(&largest_used, memory_order_relaxed);
	while (used <= env->id &&
	       !atomic_compare_exchange_weak_explicit(&largest_used, &used, env->id + 1,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

static uint64_t largest_elsewhere(const struct conn_env *env)
{
	unsigned n = atomic_load_explicit(&largest_used, memory_order_relaxed);
	uint64_t max = 0;

	for (unsigned i = 0; i < n && i < LARGEST_SLOTS; i++) {
		uint64_t v = atomic_load_explicit(&largest[i], memory_order_relaxed);

		if (i != env->id && v > max)
			max = v;
	}
	return max;
}

static void reset_over_budget(struct conn *c, struct sockmap_state *st, uint64_t total,
			      uint64_t budget)
{
	static struct ratelog lines;
	const struct sockmap_dir *u = &st->dir[KTLSD_DIR_C2B];
	const struct sockmap_dir *v = &st->dir[KTLSD_DIR_B2C];
	bool to_client = sockmap_dir_pending(v) > sockmap_dir_pending(u);
	uint64_t left_out;

	stats_sockmap_backlog_reset(c->l->stats);
	if (ratelog_allow(&lines, c->env->now_ms, &left_out))
		conn_log(
		    c, LOG_WARN,
		    "%s is not keeping up: %.1f MiB wait in the kernel's sockmap queues; all "
		    "connections have %.1f MiB there, over limits.sockmap_backlog (%.1f MiB): "
		    "resetting the largest (client→backend: received %llu, forwarded %llu; "
		    "backend→client: received %llu, forwarded %llu; %llu more connections reset "
		    "since the last line)",
		    to_client ? "the client" : "the backend", (double)st->backlog / (1 << 20),
		    (double)total / (1 << 20), (double)budget / (1 << 20),
		    (unsigned long long)(u->src_rcvd - u->user),
		    (unsigned long long)sockmap_dir_forwarded(u),
		    (unsigned long long)(v->src_rcvd - v->user),
		    (unsigned long long)sockmap_dir_forwarded(v), (unsigned long long)left_out);
	/* Its bytes go with its sockets, which close as the connection is freed. */
	set_hot(c, st, false);
	set_backlog(st, 0);
	reset(c, !to_client, ENOBUFS);
	conn_abort(c,
		   CONN_END_CLOSED); /* freed now if nothing is in flight: c and st may be gone */
}

/* While the bytes on their way over all connections exceed limits.sockmap_backlog, resets this
 * worker's largest backlogs (sockmap_budget.h). Only the hot list can hold any. */
static void enforce_budget(struct conn_env *env, uint64_t budget)
{
	uint64_t total = atomic_load_explicit(&backlog_total, memory_order_relaxed);
	struct sockmap_backlog one, *v;
	struct sockmap_state *st;
	size_t n = 0, k;

	if (total <= budget || !env->sockmap_hot)
		return;
	for (st = env->sockmap_hot; st; st = st->hot_next)
		n++;
	v = malloc(n * sizeof(*v));
	if (!v) { /* the largest alone, then again at the next check */
		one = (struct sockmap_backlog){ 0 };
		for (st = env->sockmap_hot; st; st = st->hot_next)
			if (st->c->state == CONN_FORWARDING && st->backlog > one.bytes)
				one = (struct sockmap_backlog){ st->backlog, st };
		v = &one;
		n = 1;
	} else {
		n = 0;
		for (st = env->sockmap_hot; st; st = st->hot_next)
			if (st->c->state == CONN_FORWARDING)
				v[n++] = (struct sockmap_backlog){ st->backlog, st };
	}
	k = sockmap_budget_pick(v, n, total, budget, largest_elsewhere(env));
	for (size_t i = 0; i < k; i++) {
		st = v[i].conn;
		reset_over_budget(st->c, st, total, budget);
	}
	if (v != &one)
		free(v);
}

void dp_sockmap_check(struct conn_env *env, uint64_t budget)
{
	struct sockmap_state *st, *next;

	env->sockmap_armed = false;
	for (st = env->sockmap_hot; st; st = next) {
		next = st->hot_next;
		if (st->c->state == CONN_FORWARDING)
			set_hot(st->c, st, account(st->c, st) || st->backlog);
	}
	enforce_budget(env, budget);
	publish_largest(env);
	if (env->sockmap_hot)
		arm_check(env);
}

uint64_t dp_sockmap_backlog(void)
{
	return atomic_load_explicit(&backlog_total, memory_order_relaxed);
}

/* Every tick a connection the verdict worked on (or that had bytes on their way) reads its
 * counters and publishes them in its conns entry; one with bytes on their way or moving joins
 * the hot list, whose check enforces the budget within SOCKMAP_CHECK_MS. */
static void tick(struct conn *c)
{
	struct sockmap_state *st = c->dp_data;
	struct ktlsd_conn e;
	bool have_e, moved = false;

	if (!st->mapped || c->state != CONN_FORWARDING) {
		pump(c);
		return;
	}
	have_e = bpfmap_conn_get(c->acct.cookie, &e) == 0;
	if (!have_e || e.last_ns >= st->measured_ns || st->backlog ||
	    st->dir[KTLSD_DIR_C2B].src_eof || st->dir[KTLSD_DIR_B2C].src_eof) {
		moved = account(c, st);
		/* It leaves the list in a check, which then republishes the largest. */
		if (moved || st->backlog)
			set_hot(c, st, true);
	}
	/* The hot list's readings move the counts too, without writing the entry. */
	if (have_e && (moved || e.bytes_c2b != c->bytes_c2b || e.bytes_b2c != c->bytes_b2c))
		publish(c, st, &e);
	pump(c);
}

static void complete(struct conn *c, unsigned op, int res)
{
	struct sockmap_state *st = c->dp_data;
	bool client = op == OP_DP1;
	int fd = client ? c->cfd : c->bfd;

	if (res == -ECANCELED || c->state == CONN_CLOSING)
		return;
	if (res < 0) {
		reset(c, client, -res);
		return;
	}
	if (res & POLLERR) {
		/* io_uring reports the mask of the wake-up (sk_error_report), and a kernel sender
		 * on this socket may have taken sk_err since: SO_ERROR can read 0 here
		 * (docs/notes/sockmap.md, "Fixed: bytes lost between the two insertions"). */
		int err = so_error(fd);

		reset(c, client, err ? err : ECONNRESET);
		return;
	}
	if (res & (POLLRDHUP | POLLHUP)) {
		st->dir[client ? KTLSD_DIR_C2B : KTLSD_DIR_B2C].src_eof = true;
		c->flags |= client ? CF_CIN_EOF : CF_BIN_EOF;
		return; /* pump() runs next and checks the drain; the FIN would re-fire a poll */
	}
	arm_poll(c, client);
}

static void release(struct conn *c)
{
	struct sockmap_state *st = c->dp_data;

	if (!st)
		return;
	if (st->mapped) {
		account(c, st); /* the final counts, for the metrics */
		bpfmap_pair_del(c->acct.cookie, st->bcookie);
	}
	if (st->hot) {
		set_hot(c, st, false);
		publish_largest(c->env);
	}
	set_backlog(st, 0);
	free(st);
	c->dp_data = NULL;
}

/* Only connections with no TLS to carry (tcp, tls-passthrough), where the listener and the
 * startup probe allow the tier. */
static enum dp_attach attach(struct conn *c)
{
	struct sockmap_state *st;

	if (c->tls.ssl || !datapath_sockmap_allowed(c->l->cfg) || !bpfmap_loaded())
		return DP_DECLINED;
	c->acct.cookie = bpfmap_cookie(c->cfd);
	st = calloc(1, sizeof(*st));
	if (!st)
		return DP_DECLINED;
	st->c = c;
	st->bcookie = bpfmap_cookie(c->bfd);
	if (!c->acct.cookie || !st->bcookie) {
		free(st);
		return DP_DECLINED;
	}
	c->dp_data = st;
	/* The common case (a tcp listener): nothing buffered, so the sockets join the map now and
	 * a failure leaves the connection in userspace before its tier is logged. */
	if (!buf_len(c->b_tx) && !buf_len(c->c_tx) &&
	    !(c->inflight & ~(1u << OP_DP1 | 1u << OP_DP2))) {
		if (handover(c, st) < 0) {
			release(c);
			return DP_DECLINED;
		}
	}
	return DP_ATTACHED;
}

const struct dp_ops dp_sockmap = {
	.id = KTLSD_TIER_SOCKMAP,
	.name = "sockmap",
	.attach = attach,
	.pump = pump,
	.complete = complete,
	.release = release,
	.tick = tick,
};
