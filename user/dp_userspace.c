/* dp_userspace — the userspace tier: OpenSSL's record layer over conn's buffers for tls
 * listeners, plain buffer forwarding for tcp ones.
 *
 * Each direction is a bounded pipeline (socket → rx buffer → [TLS] → tx buffer → socket). A
 * stage runs only while the next has room, so a slow reader stops ktlsd from reading the other
 * side (TCP backpressure) instead of growing memory. Half-closes travel through: the client's
 * close_notify or FIN becomes shutdown(SHUT_WR) towards the backend once everything before it is
 * sent, and the backend's FIN becomes close_notify + FIN towards the client.
 *
 * With backend TLS (backend_tls.h) each direction has one more stage: the client's plaintext in
 * bout is encrypted record by record into bcout for the backend, and the backend's records in
 * bcin are decrypted into bin; close_notify travels the same way as FIN does above. */
#include <errno.h>

#include <openssl/err.h>

#include "conn.h"
#include "err.h"
#include "handshake.h"
#include "log.h"
#include "state.h"

/* Room SSL_write needs in cout for one full record (16 KiB plaintext, CBC padding and MAC). */
#define RECORD_ROOM (16384u + 1024u)

/* client → backend: decrypt cin into bout. Returns false if the connection is closing. */
static bool tls_decrypt(struct conn *c)
{
	struct buf *o = &c->bout;
	int n;

	while (!(c->flags & CF_C_DONE)) {
		if (buf_ready(o) < 0) {
			conn_close(c, "out of memory");
			return false;
		}
		if (o->tail == o->cap)
			buf_compact(o);
		if (o->tail == o->cap)
			break;
		n = SSL_read(c->ssl, o->data + o->tail, (int)(o->cap - o->tail));
		if (n > 0) {
			o->tail += (uint32_t)n;
			c->bytes_c2b += (uint64_t)n;
			continue;
		}
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return true;
		case SSL_ERROR_ZERO_RETURN:
			c->flags |= CF_C_DONE;
			return true;
		default:
			log_info("conn peer=%s listener=%s: TLS error from client: %s", c->peer_text,
				 c->l->cfg->name, handshake_error(c->ssl, n));
			conn_close(c, "client TLS error");
			return false;
		}
	}
	return true;
}

/* backend → client: encrypt bin into cout, then close_notify once the backend is done. */
static bool tls_encrypt(struct conn *c)
{
	struct buf *in = &c->bin, *o = &c->cout;
	int n;

	while (buf_len(in) && !(c->flags & CF_C_NOTIFY)) {
		if (buf_ready(o) < 0) {
			conn_close(c, "out of memory");
			return false;
		}
		if (buf_space(o) < RECORD_ROOM)
			buf_compact(o);
		if (buf_space(o) < RECORD_ROOM)
			break;
		n = SSL_write(c->ssl, in->data + in->head, (int)MIN(buf_len(in), 16384u));
		if (n > 0) {
			buf_consume(in, (uint32_t)n);
			c->bytes_b2c += (uint64_t)n;
			continue;
		}
		if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_WRITE)
			break;
		log_info("conn peer=%s listener=%s: TLS error sending: %s", c->peer_text,
			 c->l->cfg->name, handshake_error(c->ssl, n));
		conn_close(c, "TLS write error");
		return false;
	}
	if ((c->flags & (c->bssl ? CF_B_DONE : CF_BIN_EOF)) && !buf_len(in) &&
	    !(c->flags & CF_C_NOTIFY)) {
		c->flags |= CF_C_NOTIFY;
		SSL_shutdown(c->ssl); /* queues close_notify into cout */
		ERR_clear_error();
	}
	return true;
}

/* Backend TLS, client → backend: the plaintext in bout into records in bcout, then close_notify
 * once the client is done. */
static bool backend_encrypt(struct conn *c)
{
	struct buf *in = &c->bout, *o = &c->bcout;
	int n;

	while (buf_len(in) && !(c->flags & CF_B_NOTIFY)) {
		if (buf_ready(o) < 0) {
			conn_close(c, "out of memory");
			return false;
		}
		if (buf_space(o) < RECORD_ROOM)
			buf_compact(o);
		if (buf_space(o) < RECORD_ROOM)
			break;
		n = SSL_write(c->bssl, in->data + in->head, (int)MIN(buf_len(in), 16384u));
		if (n > 0) {
			buf_consume(in, (uint32_t)n);
			continue;
		}
		if (SSL_get_error(c->bssl, n) == SSL_ERROR_WANT_WRITE)
			break;
		log_info("conn peer=%s listener=%s: TLS error sending to backend %s: %s",
			 c->peer_text, c->l->cfg->name, c->server->text,
			 handshake_error(c->bssl, n));
		conn_close(c, "backend TLS write error");
		return false;
	}
	if ((c->flags & CF_C_DONE) && !buf_len(in) && !(c->flags & CF_B_NOTIFY)) {
		c->flags |= CF_B_NOTIFY;
		SSL_shutdown(c->bssl); /* queues close_notify into bcout */
		ERR_clear_error();
	}
	return true;
}

/* Backend TLS, backend → client: the backend's records in bcin into plaintext in bin. */
static bool backend_decrypt(struct conn *c)
{
	struct buf *o = &c->bin;
	int n;

	while (!(c->flags & CF_B_DONE)) {
		if (buf_ready(o) < 0) {
			conn_close(c, "out of memory");
			return false;
		}
		if (o->tail == o->cap)
			buf_compact(o);
		if (o->tail == o->cap)
			break;
		n = SSL_read(c->bssl, o->data + o->tail, (int)(o->cap - o->tail));
		if (n > 0) {
			o->tail += (uint32_t)n;
			continue;
		}
		switch (SSL_get_error(c->bssl, n)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return true;
		case SSL_ERROR_ZERO_RETURN:
			c->flags |= CF_B_DONE;
			return true;
		default:
			log_info("conn peer=%s listener=%s: TLS error from backend %s: %s",
				 c->peer_text, c->l->cfg->name, c->server->text,
				 handshake_error(c->bssl, n));
			conn_close(c, "backend TLS error");
			return false;
		}
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
		if (!tls_decrypt(c) || !backend_encrypt(c) || !backend_decrypt(c) ||
		    !tls_encrypt(c))
			return false;
	} while (c->bytes_c2b != c2b || c->bytes_b2c != b2c);
	return true;
}

static void pump_tls(struct conn *c)
{
	if (c->bssl ? !backend_tls_move(c) : (!tls_decrypt(c) || !tls_encrypt(c)))
		return;
	conn_post_send(c, false);
	conn_post_send(c, true);
	conn_post_recv(c, true);
	conn_post_recv(c, false);
	/* Half-closes, once everything before them has left. */
	if (c->bssl) {
		if ((c->flags & CF_B_NOTIFY) && !buf_len(&c->bcout) && !c->bcout.pins)
			conn_shutdown_wr(c, false);
	} else if ((c->flags & CF_C_DONE) && !buf_len(&c->bout) && !c->bout.pins) {
		conn_shutdown_wr(c, false);
	}
	if ((c->flags & CF_C_NOTIFY) && !buf_len(&c->cout) && !c->cout.pins)
		conn_shutdown_wr(c, true);
	if (conn_both_done(c))
		conn_close(c, NULL);
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
		conn_close(c, NULL);
}

static void pump(struct conn *c)
{
	if (c->ssl)
		pump_tls(c);
	else
		pump_plain(c);
}

const struct dp_ops dp_userspace = {
	.name = "userspace",
	.pump = pump,
};
