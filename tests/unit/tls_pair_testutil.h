/* tls_pair_testutil.h — shared by test_ktls.c and test_rlayer.c: a throwaway P-256 certificate
 * and a real handshake between a client and a server SSL in this process, over memory BIOs (no
 * sockets), for one protocol version and suite, with ktlsd's key capture on both contexts when
 * asked. Each test file's group setup/teardown is make_cert/free_cert. */
#ifndef KTLSD_TLS_PAIR_TESTUTIL_H
#define KTLSD_TLS_PAIR_TESTUTIL_H

#include <stdbool.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ktls.h"

static EVP_PKEY *pkey;
static X509 *cert;

static inline int make_cert(void **state)
{
	X509_NAME *name;

	pkey = EVP_EC_gen("P-256");
	cert = X509_new();
	assert_non_null(pkey);
	assert_non_null(cert);
	assert_true(X509_set_version(cert, 2));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(cert), 1));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), -60));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
	assert_true(X509_set_pubkey(cert, pkey));
	name = X509_get_subject_name(cert);
	assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					       (const unsigned char *)"ktls.test", -1, -1, 0));
	assert_true(X509_set_issuer_name(cert, name));
	assert_true(X509_sign(cert, pkey, EVP_sha256()) > 0);
	return 0;
}

static inline int free_cert(void **state)
{
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return 0;
}

struct tls_case {
	int version;
	const char *suite;
	enum ktls_cipher cipher;
	int tickets; /* TLS 1.3 NewSessionTickets the server sends */
};

struct pair {
	SSL_CTX *cctx, *sctx;
	SSL *c, *s;
	BIO *c_in, *c_out, *s_in, *s_out; /* each SSL's read and write BIO */
};

static inline SSL_CTX *ctx_new(bool server, const struct tls_case *tc, bool capture)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	assert_non_null(ctx);
	SSL_CTX_set_security_level(ctx, 0); /* CCM8 in the negative cases */
	assert_true(SSL_CTX_set_min_proto_version(ctx, tc->version));
	assert_true(SSL_CTX_set_max_proto_version(ctx, tc->version));
	if (tc->version == TLS1_3_VERSION)
		assert_true(SSL_CTX_set_ciphersuites(ctx, tc->suite));
	else
		assert_true(SSL_CTX_set_cipher_list(ctx, tc->suite));
	if (server) {
		assert_true(SSL_CTX_use_certificate(ctx, cert));
		assert_true(SSL_CTX_use_PrivateKey(ctx, pkey));
		assert_true(SSL_CTX_set_num_tickets(ctx, (size_t)tc->tickets));
	}
	if (capture)
		assert_int_equal(ktls_capture_attach(ctx), 0);
	return ctx;
}

static inline void flush(BIO *from, BIO *to)
{
	char buf[4096];
	int n;

	while ((n = BIO_read(from, buf, sizeof(buf))) > 0)
		assert_int_equal(BIO_write(to, buf, n), n);
}

static inline void step(SSL *ssl, bool *done)
{
	int r, e;

	if (*done)
		return;
	r = SSL_do_handshake(ssl);
	if (r == 1) {
		*done = true;
		return;
	}
	e = SSL_get_error(ssl, r);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
		char msg[256];

		ERR_error_string_n(ERR_get_error(), msg, sizeof(msg));
		fail_msg("handshake (%s): %s", SSL_is_server(ssl) ? "server" : "client", msg);
	}
}

static inline void pair_new(struct pair *p, const struct tls_case *tc, bool capture)
{
	bool cdone = false, sdone = false;

	memset(p, 0, sizeof(*p));
	p->cctx = ctx_new(false, tc, capture);
	p->sctx = ctx_new(true, tc, capture);
	p->c = SSL_new(p->cctx);
	p->s = SSL_new(p->sctx);
	p->c_in = BIO_new(BIO_s_mem());
	p->c_out = BIO_new(BIO_s_mem());
	p->s_in = BIO_new(BIO_s_mem());
	p->s_out = BIO_new(BIO_s_mem());
	SSL_set_bio(p->c, p->c_in, p->c_out);
	SSL_set_bio(p->s, p->s_in, p->s_out);
	SSL_set_connect_state(p->c);
	SSL_set_accept_state(p->s);
	for (int i = 0; i < 32 && !(cdone && sdone); i++) {
		step(p->c, &cdone);
		flush(p->c_out, p->s_in);
		step(p->s, &sdone);
		flush(p->s_out, p->c_in);
	}
	assert_true(cdone && sdone);
}

static inline void pair_free(struct pair *p)
{
	SSL_free(p->c);
	SSL_free(p->s);
	SSL_CTX_free(p->cctx);
	SSL_CTX_free(p->sctx);
}

/* Reads exactly n bytes of application data on ssl (the bytes are already in its read BIO). */
static inline void read_exact(SSL *ssl, const char *want, size_t n)
{
	char buf[512];
	size_t got = 0;

	while (got < n) {
		int r = SSL_read(ssl, buf + got, (int)(n - got));

		if (r <= 0)
			fail_msg("SSL_read: error %d", SSL_get_error(ssl, r));
		got += (size_t)r;
	}
	assert_memory_equal(buf, want, n);
}

/* Lets the client take what the server sent without application data (tickets). */
static inline void client_absorb(struct pair *p)
{
	char b;

	flush(p->s_out, p->c_in);
	assert_int_equal(SSL_read(p->c, &b, 1), -1);
	assert_int_equal(SSL_get_error(p->c, -1), SSL_ERROR_WANT_READ);
}

static inline void send_one(SSL *from, BIO *from_out, BIO *to_in, const char *msg)
{
	assert_int_equal(SSL_write(from, msg, (int)strlen(msg)), (int)strlen(msg));
	flush(from_out, to_in);
}

#endif
