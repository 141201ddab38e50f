/* conn — the connection object: states and their transitions, socket I/O bookkeeping shared by
 * the state machine and the tiers, the handshake report, and teardown. See conn.h. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "conn.h"
#include "conn_bpf.h"
#include "conn_log.h"
#include "rlayer.h"
#include "state.h"
#include "stats.h"
#include "stats_conn.h"

static const char *const state_names[CONN_STATE_N] = {
	[CONN_HANDSHAKE] = "handshake",
	[CONN_HELLO] = "hello",
	[CONN_CONNECTING] = "connecting",
	[CONN_BACKEND_TLS] = "backend-tls",
	[CONN_TIER_SELECT] = "tier-select",
	[CONN_FORWARDING] = "forwarding",
	[CONN_FLUSH] = "flush",
	[CONN_CLOSING] = "closing",
};

#define TO(s) (1u << (s))
#define ENDS (TO(CONN_FLUSH) | TO(CONN_CLOSING))
/* The transition table: the states each state may enter (conn.h has the picture). */
static const uint16_t next_states[CONN_STATE_N] = {
	[CONN_HANDSHAKE] = TO(CONN_CONNECTING) | ENDS,
	[CONN_HELLO] = TO(CONN_CONNECTING) | ENDS,
	[CONN_CONNECTING] = TO(CONN_BACKEND_TLS) | TO(CONN_TIER_SELECT) | ENDS,
	[CONN_BACKEND_TLS] = TO(CONN_TIER_SELECT) | ENDS,
	[CONN_TIER_SELECT] = TO(CONN_FORWARDING) | ENDS,
	[CONN_FORWARDING] = ENDS,
	[CONN_FLUSH] = TO(CONN_CLOSING),
	[CONN_CLOSING] = 0,
};

unsigned long conn_bad_transitions;

const char *conn_state_name(enum conn_state s)
{
	return s < CONN_STATE_N ? state_names[s] : "?";
}

void conn_enter(struct conn *c, enum conn_state s)
{
	if (!(next_states[c->state] & TO(s))) {
		conn_bad_transitions++;
		conn_log(c, LOG_ERR, "bug: state %s → %s is not in the table",
			 conn_state_name(c->state), conn_state_name(s));
	}
	c->state = (uint8_t)s;
}

void conn_list_add(struct conn_env *env, struct conn *c)
{
	c->prev = NULL;
	c->next = env->conns;
	if (env->conns)
		env->conns->prev = c;
	env->conns = c;
	env->n_conns++;
}

void conn_list_del(struct conn_env *env, struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		env->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	env->n_conns--;
}

void conn_report(struct conn *c, enum conn_end end, const char *detail)
{
	if (c->flags & CF_LOGGED)
		return;
	c->flags |= CF_LOGGED;
	conn_log_handshake(c, detail ? detail : conn_end_name(end));
	stats_conn_logged(c, end, detail);
}

static void conn_free(struct conn *c)
{
	const struct conn_env *env = c->env;

	if (c->dp && c->dp->release)
		c->dp->release(c);
	/* The totals have the connection's last bytes before its sockets close: whoever sees the
	 * sockets gone (ss, a test, a scraper) sees complete counts. */
	stats_conn_freed(c);
	if (c->cfd >= 0)
		env->io->close(env->io_ctx, c->cfd);
	if (c->bfd >= 0)
		env->io->close(env->io_ctx, c->bfd);
	SSL_free(c->tls.ssl);
	SSL_free(c->btls.ssl);
	rlayer_free(c->tls.rl);
	buf_release(&c->btls.in);
	buf_release(&c->btls.out);
	buf_release(&c->cin);
	buf_release(&c->cout);
	buf_release(&c->bin);
	buf_release(&c->bout);
	atomic_fetch_sub(&c->l->conns, 1);
	admit_release(&c->limits);
	conn_list_del(c->env, c);
	state_put(c->st);
	free(c);
}

void conn_cancel(struct conn *c, unsigned op)
{
	if (conn_busy(c, op))
		c->env->io->cancel(c->env->io_ctx, conn_ud(c, op));
}

void conn_close(struct conn *c, enum conn_end end)
{
	if (c->state == CONN_CLOSING)
		return;
	conn_enter(c, CONN_CLOSING);
	c->end = (uint8_t)end;
	admit_handshake_done(&c->limits);
	if (!(c->flags & CF_LOGGED))
		conn_report(c, end, NULL);
	else if (end != CONN_END_CLOSED)
		conn_log(c, LOG_DEBUG, "closed: %s (c2b=%llu b2c=%llu)", conn_end_name(end),
			 (unsigned long long)c->bytes_c2b, (unsigned long long)c->bytes_b2c);
	for (unsigned op = OP_CRECV; op <= OP_DP4; op++)
		conn_cancel(c, op);
}

void conn_settle(struct conn *c)
{
	if (c->state == CONN_CLOSING && c->inflight == 0)
		conn_free(c);
}

void conn_abort(struct conn *c, enum conn_end end)
{
	conn_close(c, end);
	conn_settle(c);
}

void conn_release_if_empty(struct buf *b)
{
	if (b->data && !b->pins && buf_len(b) == 0)
		buf_release(b);
}

void conn_post_poll(struct conn *c, int fd, unsigned events, unsigned op)
{
	if (conn_busy(c, op))
		return;
	c->env->io->poll(c->env->io_ctx, fd, events, conn_ud(c, op));
	c->inflight |= 1u << op;
}

/* A parked connection waits for readability with a poll, which holds no buffer: an idle
 * connection costs its struct, its keys (rlayer, without cipher contexts) or its SSL (whose own
 * buffers OpenSSL releases), and its sockets. */
static void post_readable(struct conn *c, bool client)
{
	conn_release_if_empty(&c->cin);
	conn_release_if_empty(&c->cout);
	conn_release_if_empty(&c->bin);
	conn_release_if_empty(&c->bout);
	conn_post_poll(c, client ? c->cfd : c->bfd, POLLIN, client ? OP_CRECV : OP_BRECV);
	c->flags |= client ? CF_CPOLL : CF_BPOLL;
}

void conn_post_recv(struct conn *c, bool client)
{
	unsigned op = client ? OP_CRECV : OP_BRECV;
	struct buf *b = client ? &c->cin : conn_brx(c);
	uint32_t len;

	if (conn_busy(c, op) || (c->flags & (client ? CF_CIN_EOF : CF_BIN_EOF)))
		return;
	if ((c->flags & CF_PARKED) && buf_len(b) == 0) {
		post_readable(c, client);
		return;
	}
	if (buf_ready(b) < 0) {
		conn_close(c, CONN_END_NO_MEMORY);
		return;
	}
	if (buf_space(b) < b->cap / 4)
		buf_compact(b);
	if (buf_space(b) == 0)
		return; /* backpressure: the other side must drain first */
	len = buf_space(b);
	/* Before a kernel handoff, take the client's handshake one record at a time: whatever
	 * follows its Finished stays in the socket for the kernel to decrypt. */
	if (client && c->tls.ktls_candidate && c->state == CONN_HANDSHAKE)
		len = (uint32_t)MIN(len, record_want(&c->tls.rx_rec));
	c->env->io->recv(c->env->io_ctx, client ? c->cfd : c->bfd, b->data + b->tail, len,
			 conn_ud(c, op));
	c->inflight |= 1u << op;
	b->pins++;
}

void conn_post_send(struct conn *c, bool client)
{
	unsigned op = client ? OP_CSEND : OP_BSEND;
	struct buf *b = client ? c->c_tx : c->b_tx;

	if (conn_busy(c, op) || buf_len(b) == 0)
		return;
	c->env->io->send(c->env->io_ctx, client ? c->cfd : c->bfd, b->data + b->head, buf_len(b),
			 conn_ud(c, op));
	c->inflight |= 1u << op;
	b->pins++;
}

void conn_close_after_flush(struct conn *c, enum conn_end end)
{
	if (c->state == CONN_CLOSING)
		return;
	c->end = (uint8_t)end;
	c->flags |= CF_C_NOTIFY;
	if (c->state != CONN_FLUSH)
		conn_enter(c, CONN_FLUSH);
	conn_post_send(c, true);
	if (!conn_busy(c, OP_CSEND))
		conn_close(c, end);
}

void conn_shutdown_wr(struct conn *c, bool client)
{
	uint16_t flag = client ? CF_C_SHUT : CF_B_SHUT;

	if (c->flags & flag)
		return;
	c->flags |= flag;
	/* ENOTCONN when the peer already reset: the close that follows covers it. */
	shutdown(client ? c->cfd : c->bfd, SHUT_WR);
}

void conn_set_tier(struct conn *c, const struct dp_ops *dp)
{
	const struct dp_ops *old = c->dp;

	c->dp = dp;
	if (!(c->flags & CF_LOGGED) || !old || old->id == dp->id)
		return;
	/* A fallback after the tier was reported: the gauges and the conns entry follow. */
	stats_conn_moved(c->l->stats, (enum ktlsd_tier)c->acct.tier, dp->id);
	c->acct.tier = (uint8_t)dp->id;
	conn_bpf_open(c);
}
