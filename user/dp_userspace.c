/* dp_userspace — the userspace tier: TLS records over conn's buffers for tls listeners (ktlsd's
 * record layer, conn_rl.h, when the session allows it, else OpenSSL's), plain buffer forwarding
 * for tcp ones.
 *
 * Each direction is a bounded pipeline (socket → rx buffer → [TLS] → tx buffer → socket). A
 * stage runs only while the next has room, so a slow reader stops ktlsd from reading the other
 * side (TCP backpressure) instead of growing memory. Half-closes travel through: the client's
 * close_notify or FIN becomes shutdown(SHUT_WR) towards the backend once everything before it is
 * sent, and the backend's FIN becomes close_notify + FIN towards the client.
 *
 * With backend TLS (backend_tls.h) each direction has one more stage: the client's plaintext in
 * bout is encrypted record by record into btls.out for the backend, and the backend's records in
 * btls.in are decrypted into bin; close_notify travels the same way as FIN does above. */
#include <errno.h>
#include <malloc.h>

#include <openssl/err.h>

#include "conn.h"
#include "conn_log.h"
#include "conn_rl.h"
#include "dp_userspace.h"
#include "err.h"
#include "handshake.h"
#include "rlayer.h"
#include "state.h"
#include "tls_wire.h"

/* Room SSL_write needs in cout for one full record (16 KiB plaintext, CBC padding and MAC). */
#define RECORD_ROOM (TLS_MAX_PLAINTEXT + 1024u)

/* One TLS session of a connection, seen from the pipeline: the client's (ssl) decrypts cin into
 * bout and encrypts bin into cout; with backend TLS, the backend's (btls.ssl) decrypts btls.in into
 * bin and encrypts bout into btls.out. */
struct tls_side {
	SSL *ssl;
	struct buf *plain_out, *plain_in; /* SSL_read's destination, SSL_write's source */
	uint16_t done, notify, peer_done; /* flags: close_notify read, queued, source finished */
	uint64_t *count_in, *count_out;	  /* plaintext counters (the client side only) */
};

static struct tls_side side(struct conn *c, bool backend)
{
	if (backend)
		return (struct tls_side){ c->btls.ssl, &c->bin,	  &c->bout, CF_B_DONE,
					  CF_B_NOTIFY, CF_C_DONE, NULL,	    NULL };
	return (struct tls_side){ c->tls.ssl,	 &c->bout,     &c->bin,
				  CF_C_DONE,	 CF_C_NOTIFY,  c->btls.ssl ? CF_B_DONE : CF_BIN_EOF,
				  &c->bytes_c2b, &c->bytes_b2c };
}

/* Logs a TLS error of one side and starts closing. Returns false (the connection is closing). */
static bool tls_failed(struct conn *c, bool backend, bool sending, const struct tls_side *t, int n)
{
	const char *err = handshake_error(t->ssl, n);

	if (backend)
		conn_log(c, LOG_INFO, "TLS error %s backend %s: %s",
			 sending ? "sending to" : "from", c->server->text, err);
	else if (sending)
		conn_log(c, LOG_INFO, "TLS error sending: %s", err);
	else
		conn_log(c, LOG_INFO, "TLS error from client: %s", err);
	if (!backend && !sending && buf_len(&c->cout)) {
		/* OpenSSL queued its fatal alert (bad_record_mac, unexpected_message, ...) in cout:
		 * it goes out before the close, as RFC 5246 §7.2.2 wants. */
		conn_close_after_flush(c, CONN_END_CLIENT_TLS);
		return false;
	}
	conn_close(c, backend ? (sending ? CONN_END_BACKEND_TLS_WRITE : CONN_END_BACKEND_TLS_ERROR)
			      : (sending ? CONN_END_TLS_WRITE : CONN_END_CLIENT_TLS));
	return false;
}

/* Decrypts what the peer of one side sent into plain_out. Returns false if the connection is
 * closing. */
static bool tls_decrypt(struct conn *c, bool backend)
{
	struct tls_side t = side(c, backend);
	struct buf *o = t.plain_out;
	int n;

	if (!backend && c->tls.rl)
		return conn_rl_decrypt(c);
	while (!(c->flags & t.done)) {
		if (buf_ready(o) < 0) {
			conn_close(c, CONN_END_NO_MEMORY);
			return false;
		}
		if (o->tail == o->cap)
			buf_compact(o);
		if (o->tail == o->cap)
			break;
		n = SSL_read(t.ssl, o->data + o->tail, (int)(o->cap - o->tail));
		if (n > 0) {
			o->tail += (uint32_t)n;
			if (t.count_in)
				*t.count_in += (uint64_t)n;
			continue;
		}
		switch (SSL_get_error(t.ssl, n)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return true;
		case SSL_ERROR_ZERO_RETURN:
			c->flags |= t.done;
			return true;
		default:
			return tls_failed(c, backend, false, &t, n);
		}
	}
	return true;
}

/* Encrypts plain_in towards the peer of one side, then close_notify once the source is done. */
static bool tls_encrypt(struct conn *c, bool backend)
{
	struct tls_side t = side(c, backend);
	struct buf *in = t.plain_in, *o = backend ? &c->btls.out : &c->cout;
	int n;

	if (!backend && c->tls.rl)
		return conn_rl_encrypt(c, t.peer_done);
	while (buf_len(in) && !(c->flags & t.notify)) {
		if (buf_ready(o) < 0) {
			conn_close(c, CONN_END_NO_MEMORY);
			return false;
		}
		if (buf_space(o) < RECORD_ROOM)
			buf_compact(o);
		if (buf_space(o) < RECORD_ROOM)
			break;
		n = SSL_write(t.ssl, in->data + in->head, (int)MIN(buf_len(in), TLS_MAX_PLAINTEXT));
		if (n > 0) {
			buf_consume(in, (uint32_t)n);
			if (t.count_out)
				*t.count_out += (uint64_t)n;
			continue;
		}
		if (SSL_get_error(t.ssl, n) == SSL_ERROR_WANT_WRITE)
			break;
		return tls_failed(c, backend, true, &t, n);
	}
	if ((c->flags & t.peer_done) && !buf_len(in) && !(c->flags & t.notify)) {
		c->flags |= t.notify;
		SSL_shutdown(t.ssl); /* queues close_notify towards the peer */
		ERR_clear_error();
	}
	return true;
}

/* Runs both stages of each direction until neither moves: a stage that frees room lets the one
 * before it continue without waiting for another completion. */
static bool backend_tls_move(struct conn *c)
{
	uint64_t c2b, b2c;

	do {
		c2b = c->bytes_c2b;
		b2c = c->bytes_b2c;
		if (!tls_decrypt(c, false) || !tls_encrypt(c, true) || !tls_decrypt(c, true) ||
		    !tls_encrypt(c, false))
			return false;
	} while (c->bytes_c2b != c2b || c->bytes_b2c != b2c);
	return true;
}

static void pump_tls(struct conn *c)
{
	if (c->btls.ssl ? !backend_tls_move(c) : (!tls_decrypt(c, false) || !tls_encrypt(c, false)))
		return;
	conn_post_send(c, false);
	conn_post_send(c, true);
	conn_post_recv(c, true);
	conn_post_recv(c, false);
	/* Half-closes, once everything before them has left. */
	if (c->btls.ssl) {
		if ((c->flags & CF_B_NOTIFY) && !buf_len(&c->btls.out) && !c->btls.out.pins)
			conn_shutdown_wr(c, false);
	} else if ((c->flags & CF_C_DONE) && !buf_len(&c->bout) && !c->bout.pins) {
		conn_shutdown_wr(c, false);
	}
	if ((c->flags & CF_C_NOTIFY) && !buf_len(&c->cout) && !c->cout.pins)
		conn_shutdown_wr(c, true);
	if (conn_both_done(c))
		conn_close(c, CONN_END_CLOSED);
}

static void pump_plain(struct conn *c)
{
	conn_post_send(c, false);
	conn_post_send(c, true);
	conn_post_recv(c, true);
	conn_post_recv(c, false);
	if ((c->flags & CF_CIN_EOF) && !buf_len(&c->cin) && !c->cin.pins)
		conn_shutdown_wr(c, false);
	if ((c->flags & CF_BIN_EOF) && !buf_len(&c->bin) && !c->bin.pins)
		conn_shutdown_wr(c, true);
	if (conn_both_done(c))
		conn_close(c, CONN_END_CLOSED);
}

static void pump(struct conn *c)
{
	if (conn_tls(c))
		pump_tls(c);
	else
		pump_plain(c);
}

/* ---- parking ---- */

/* Connections parked on this worker's last two ticks: their buffers come back to malloc as the
 * cancelled recvs complete, after the tick that parked them. */
static __thread unsigned parked_now, parked_prev;

void dp_userspace_tick_done(void)
{
	/* free() keeps what it gets in the heap; give the pages of the released buffers back. */
	if (parked_prev)
		malloc_trim(0);
	parked_prev = parked_now;
	parked_now = 0;
}

/* Parks an idle connection whose buffers are all empty: the recvs holding them are cancelled,
 * and each comes back through conn_complete and pump as a poll (conn_post_recv). */
static void idle(struct conn *c)
{
	/* Backend TLS keeps its own buffers (btls.in, btls.out) and SSL: not parked. */
	if (c->btls.ssl || (c->flags & CF_PARKED) || conn_busy(c, OP_CSEND) ||
	    conn_busy(c, OP_BSEND) || buf_len(&c->cin) || buf_len(&c->cout) || buf_len(&c->bin) ||
	    buf_len(&c->bout))
		return;
	c->flags |= CF_PARKED;
	parked_now++;
	conn_log(c, LOG_DEBUG, "parked (idle %llu ms)",
		 (unsigned long long)(c->env->now_ms - c->active_ms));
	if (!(c->flags & CF_CPOLL))
		conn_cancel(c, OP_CRECV);
	if (!(c->flags & CF_BPOLL))
		conn_cancel(c, OP_BRECV);
	conn_release_if_empty(&c->cin);
	conn_release_if_empty(&c->cout);
	conn_release_if_empty(&c->bin);
	conn_release_if_empty(&c->bout);
	rlayer_idle(c->tls.rl);
}

/* Every connection can have it; ktlsd's record layer takes the client side over from OpenSSL's
 * when the session allows it (conn_rl.h). */
static enum dp_attach attach(struct conn *c)
{
	if (c->tls.ssl)
		conn_rl_take_over(c);
	return DP_ATTACHED;
}

static void start(struct conn *c)
{
	if (!c->tls.rl || !c->tls.ssl)
		return;
	conn_rl_free_ssl(c);
	conn_log(c, LOG_DEBUG, "records by ktlsd's record layer from here (SSL freed)");
}

const struct dp_ops dp_userspace = {
	.id = KTLSD_TIER_USERSPACE,
	.name = "userspace",
	.attach = attach,
	.start = start,
	.pump = pump,
	.idle = idle,
};
