#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/err.h>

#include "err.h"
#include "handshake.h"
#include "log.h"
#include "state.h"

static BIO_METHOD *conn_bio_method;
static pthread_once_t conn_bio_once = PTHREAD_ONCE_INIT;

/* OpenSSL writes records here: append to cout, or ask to be called again when it is full. */
static int conn_bio_write(BIO *b, const char *data, int len)
{
	struct conn *c = BIO_get_data(b);
	struct buf *o = &c->cout;
	uint32_t n;

	BIO_clear_retry_flags(b);
	if (buf_ready(o) < 0)
		return -1;
	if (buf_space(o) < (uint32_t)len)
		buf_compact(o);
	n = MIN(buf_space(o), (uint32_t)len);
	if (n == 0) {
		BIO_set_retry_write(b);
		return -1;
	}
	memcpy(o->data + o->tail, data, n);
	o->tail += n;
	record_feed(&c->tx_rec, (const uint8_t *)data, n);
	return (int)n;
}

/* OpenSSL reads the client's bytes here: from cin, EOF once the client sent FIN. */
static int conn_bio_read(BIO *b, char *out, int len)
{
	struct conn *c = BIO_get_data(b);
	struct buf *in = &c->cin;
	uint32_t n = MIN(buf_len(in), (uint32_t)len);

	BIO_clear_retry_flags(b);
	if (n == 0) {
		if (c->flags & CF_CIN_EOF)
			return 0;
		BIO_set_retry_read(b);
		return -1;
	}
	memcpy(out, in->data + in->head, n);
	buf_consume(in, n);
	return (int)n;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct conn *c = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return (long)buf_len(&c->cin);
	case BIO_CTRL_WPENDING:
		return (long)buf_len(&c->cout);
	case BIO_CTRL_EOF:
		return buf_len(&c->cin) == 0 && (c->flags & CF_CIN_EOF);
	default:
		return 0;
	}
}

static int conn_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void conn_bio_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ktlsd-conn");

	if (!m || !BIO_meth_set_write(m, conn_bio_write) || !BIO_meth_set_read(m, conn_bio_read) ||
	    !BIO_meth_set_ctrl(m, conn_bio_ctrl) || !BIO_meth_set_create(m, conn_bio_create)) {
		BIO_meth_free(m);
		return;
	}
	conn_bio_method = m;
}

/* Renegotiation is never allowed (SSL_OP_NO_RENEGOTIATION, set by the policy): OpenSSL answers a
 * client's attempt with a no_renegotiation alert; say so in the log. */
static void info_cb(const SSL *ssl, int where, int ret)
{
	const struct conn *c = SSL_get_app_data(ssl);

	if ((where & SSL_CB_WRITE_ALERT) && (ret & 0xff) == SSL_AD_NO_RENEGOTIATION && c)
		log_info("conn peer=%s listener=%s: client attempted renegotiation: refused",
			 c->peer_text, c->l->cfg->name);
}

int handshake_start(struct conn *c, SSL_CTX *ctx)
{
	BIO *bio = NULL;
	int ret = 0;

	pthread_once(&conn_bio_once, conn_bio_init);
	ENSURE(conn_bio_method, ENOMEM);
	c->ssl = SSL_new(ctx);
	bio = BIO_new(conn_bio_method);
	ENSURE(c->ssl && bio, ENOMEM);
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio); /* the SSL owns the BIO from here */
	bio = NULL;
	SSL_set_app_data(c->ssl, c);
	SSL_set_info_callback(c->ssl, info_cb);
	SSL_set_accept_state(c->ssl);
cleanup:
	BIO_free(bio);
	if (ret < 0) {
		SSL_free(c->ssl);
		c->ssl = NULL;
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
	int r = SSL_do_handshake(c->ssl);

	if (r == 1)
		return 1;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
	case SSL_ERROR_WANT_CLIENT_HELLO_CB:
		return 0;
	default:
		*why = handshake_error(c->ssl, r);
		return -EPROTO;
	}
}
