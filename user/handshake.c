#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "conn_bio.h"
#include "conn_data.h"
#include "err.h"
#include "conn_rl.h"
#include "handshake.h"
#include "conn_log.h"
#include "state.h"
#include "tls_wire.h"

/* Renegotiation is never allowed (SSL_OP_NO_RENEGOTIATION, set by the policy): OpenSSL answers a
 * client's attempt with a no_renegotiation alert; say so in the log. */
static void info_cb(const SSL *ssl, int where, int ret)
{
	struct conn *c = SSL_get_app_data(ssl);

	if ((where & SSL_CB_WRITE_ALERT) && (ret & 0xff) == TLS_ALERT_NO_RENEGOTIATION && c)
		conn_log_renegotiation(c);
}

int handshake_start(struct conn *c, SSL_CTX *ctx)
{
	int ret = 0;

	c->tls.ssl = SSL_new(ctx);
	ENSURE(c->tls.ssl, ENOMEM);
	GUARD(conn_bio_attach(c, c->tls.ssl, false));
	SSL_set_app_data(c->tls.ssl, c);
	SSL_set_info_callback(c->tls.ssl, info_cb);
	SSL_set_accept_state(c->tls.ssl);
cleanup:
	if (ret < 0) {
		SSL_free(c->tls.ssl);
		c->tls.ssl = NULL;
	}
	return ret;
}

const char *handshake_error(SSL *ssl, int ret)
{
	static __thread char why[256];
	unsigned long e;
	int err = SSL_get_error(ssl, ret);

	if (err == SSL_ERROR_SSL && (e = ERR_peek_error()) != 0)
		ERR_error_string_n(e, why, sizeof(why));
	else if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL)
		snprintf(why, sizeof(why), "client closed the connection");
	else
		snprintf(why, sizeof(why), "SSL error %d", err);
	ERR_clear_error();
	return why;
}

int handshake_step(struct conn *c, const char **why)
{
	int r = SSL_do_handshake(c->tls.ssl);

	if (r == 1)
		return 1;
	switch (SSL_get_error(c->tls.ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
	case SSL_ERROR_WANT_CLIENT_HELLO_CB:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
	case SSL_ERROR_SYSCALL:
		*why = handshake_error(c->tls.ssl, r);
		return -ECONNRESET;
	default:
		*why = handshake_error(c->tls.ssl, r);
		return -EPROTO;
	}
}

/* What the client sent since its Finished, when no recv is in flight: read at once, without
 * waiting, so a close_notify sent right behind the Finished is seen before the backend connect.
 * The ring would deliver the same bytes one turn later, after the connect was issued. */
static void read_ready(struct conn *c)
{
	struct buf *b = &c->cin;
	ssize_t n;

	if ((c->inflight & (1u << OP_CRECV)) || (c->flags & CF_CIN_EOF) || buf_ready(b) < 0)
		return;
	if (buf_space(b) < b->cap / 4)
		buf_compact(b);
	if (buf_space(b) == 0)
		return;
	n = recv(c->cfd, b->data + b->tail, buf_space(b), MSG_DONTWAIT);
	if (n > 0) {
		b->tail += (uint32_t)n;
		c->active_ms = c->env->now_ms;
	} else if (n == 0) {
		c->flags |= CF_CIN_EOF;
	}
}

/* Whether the client's next record can be an alert: only such a record is opened here. Any other
 * is left whole in cin, so that ktlsd's record layer can take the connection over from OpenSSL
 * (conn_rl_take_over wants OpenSSL to hold none of the client's plaintext). TLS 1.2 sends alerts
 * under their own content type; TLS 1.3 hides them in application_data records, of which an
 * unpadded alert is the 19-byte one: 2 bytes of alert, the inner type, a 16-byte tag. */
static bool alert_first(const struct conn *c)
{
	const uint8_t *h = c->cin.data + c->cin.head;

	if (buf_len(&c->cin) < TLS_RECORD_HEADER)
		return false;
	if (h[0] == TLS_CT_ALERT)
		return true;
	return h[0] == TLS_CT_APPLICATION_DATA && SSL_version(c->tls.ssl) == TLS1_3_VERSION &&
	       ((unsigned)h[3] << 8 | h[4]) == 2 + 1 + TLS_AEAD_TAG;
}

bool handshake_client_done(struct conn *c)
{
	unsigned char byte;
	int r;

	/* A kernel handoff candidate took the handshake one record at a time: whatever follows the
	 * Finished stays in the socket, for the kernel to decrypt. */
	if (c->tls.ktls_candidate)
		return false;
	read_ready(c);
	if (buf_len(&c->cin) == 0)
		return (c->flags & CF_CIN_EOF) != 0; /* a FIN with nothing before it */
	if (!alert_first(c))
		return false;
	/* Opened with ktlsd's record layer when it carries the session: a 19-byte TLS 1.3 record
	 * may as well be two bytes of data, which SSL_peek would leave inside OpenSSL. */
	if ((r = conn_rl_peek_close_notify(c)) >= 0)
		return r == 1;
	/* Otherwise OpenSSL may look, but only at a record that cannot hold data. */
	if (c->cin.data[c->cin.head] != TLS_CT_ALERT)
		return false;
	r = SSL_peek(c->tls.ssl, &byte, 1);
	if (r > 0)
		return false;
	if (SSL_get_error(c->tls.ssl, r) == SSL_ERROR_ZERO_RETURN)
		return true;
	ERR_clear_error(); /* a partial record (or a bad one, which the datapath reports) */
	return false;
}
