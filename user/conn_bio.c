#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "conn_data.h"
#include "conn_bio.h"

static BIO_METHOD *method[2]; /* [backend] */
static int backend_type;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

/* The side of c a BIO stands for. */
struct side {
	struct buf *in, *out;
	bool eof;		     /* the peer sent FIN */
	struct record_track *tx_rec; /* fed with what OpenSSL writes, or NULL */
	struct record_track *rx_rec; /* fed with what OpenSSL reads, or NULL */
};

static struct side side_of(BIO *b)
{
	struct conn *c = BIO_get_data(b);

	if (BIO_method_type(b) == backend_type)
		return (struct side){ &c->btls.in, &c->btls.out, c->flags & CF_BIN_EOF, NULL,
				      NULL };
	return (struct side){ &c->cin, &c->cout, c->flags & CF_CIN_EOF, &c->tls.tx_rec,
			      &c->tls.ssl_rx };
}

/* OpenSSL writes records here: append to out, or ask to be called again when it is full. */
static int bio_write(BIO *b, const char *data, int len)
{
	struct side s = side_of(b);
	uint32_t n;

	BIO_clear_retry_flags(b);
	if (buf_ready(s.out) < 0)
		return -1;
	if (buf_space(s.out) < (uint32_t)len)
		buf_compact(s.out);
	n = MIN(buf_space(s.out), (uint32_t)len);
	if (n == 0) {
		BIO_set_retry_write(b);
		return -1;
	}
	memcpy(s.out->data + s.out->tail, data, n);
	s.out->tail += n;
	if (s.tx_rec)
		record_feed(s.tx_rec, (const uint8_t *)data, n);
	return (int)n;
}

/* OpenSSL reads the peer's bytes here: from in, EOF once the peer sent FIN. */
static int bio_read(BIO *b, char *out, int len)
{
	struct side s = side_of(b);
	uint32_t n = MIN(buf_len(s.in), (uint32_t)len);

	BIO_clear_retry_flags(b);
	if (n == 0) {
		if (s.eof)
			return 0;
		BIO_set_retry_read(b);
		return -1;
	}
	memcpy(out, s.in->data + s.in->head, n);
	if (s.rx_rec)
		record_feed(s.rx_rec, s.in->data + s.in->head, n);
	buf_consume(s.in, n);
	return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct side s = side_of(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return (long)buf_len(s.in);
	case BIO_CTRL_WPENDING:
		return (long)buf_len(s.out);
	case BIO_CTRL_EOF:
		return buf_len(s.in) == 0 && s.eof;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *method_new(int type, const char *name)
{
	BIO_METHOD *m = BIO_meth_new(type, name);

	if (!m || !BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

static void methods_init(void)
{
	backend_type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
	method[0] = method_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ktlsd-client");
	method[1] = method_new(backend_type, "ktlsd-backend");
}

int conn_bio_attach(struct conn *c, SSL *ssl, bool backend)
{
	BIO *bio;

	pthread_once(&method_once, methods_init);
	if (!method[backend] || !(bio = BIO_new(method[backend])))
		return -ENOMEM;
	BIO_set_data(bio, c);
	SSL_set_bio(ssl, bio, bio);
	return 0;
}
