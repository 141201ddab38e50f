/* certstore_testutil.h — shared by test_certstore.c and test_mtls.c: finding (or generating) the
 * fixtures of tests/fixtures/gen-certstore.sh, and an in-memory TLS handshake between a client
 * and a server SSL in the same process (two SSL objects over a BIO pair: no sockets). */
#ifndef KTLSD_CERTSTORE_TESTUTIL_H
#define KTLSD_CERTSTORE_TESTUTIL_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static char fx_dir[PATH_MAX + 16];
static char fx_tmp[PATH_MAX];

static void fx_cleanup(void)
{
	char cmd[PATH_MAX + 16];

	if (fx_tmp[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx_tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", fx_tmp);
	}
}

static const char *fx_find_script(void)
{
	static char path[PATH_MAX];
	static const char *const rel[] = { ".", "..", "../..", "../../.." };
	const char *src = getenv("KTLSD_SRCDIR");
	const char *here = __FILE__; /* tests/unit/certstore_testutil.h, relative or absolute */
	const char *slash = strrchr(here, '/');

	if (src) {
		snprintf(path, sizeof(path), "%s/tests/fixtures/gen-certstore.sh", src);
		if (access(path, R_OK) == 0)
			return path;
	}
	if (slash) {
		snprintf(path, sizeof(path), "%.*s/../fixtures/gen-certstore.sh",
			 (int)(slash - here), here);
		if (access(path, R_OK) == 0)
			return path;
	}
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		snprintf(path, sizeof(path), "%s/tests/fixtures/gen-certstore.sh", rel[i]);
		if (access(path, R_OK) == 0)
			return path;
	}
	return NULL;
}

static bool fx_complete(void)
{
	char p[PATH_MAX + 64];

	/* The script's last outputs: present means it ran to the end. */
	snprintf(p, sizeof(p), "%s/client-inter.chain.pem", fx_dir);
	return access(p, R_OK) == 0;
}

/* Sets fx_dir to $KTLSD_FIXTURES/certstore, generating the fixtures there (or, without
 * KTLSD_FIXTURES, in a temporary directory removed at exit) when they are missing. Exits 77 (a
 * visible skip) when they cannot be had. */
static inline void fx_init(void)
{
	const char *env = getenv("KTLSD_FIXTURES"), *script;
	char base[PATH_MAX], cmd[3 * PATH_MAX];

	if (env && *env) {
		snprintf(base, sizeof(base), "%s", env);
	} else {
		snprintf(fx_tmp, sizeof(fx_tmp), "%s/ktlsd-fixtures-XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(fx_tmp)) {
			printf("SKIP: cannot create a directory for fixtures\n");
			exit(77);
		}
		atexit(fx_cleanup);
		snprintf(base, sizeof(base), "%s", fx_tmp);
	}
	snprintf(fx_dir, sizeof(fx_dir), "%s/certstore", base);
	if (fx_complete())
		return;
	script = fx_find_script();
	if (!script) {
		printf("SKIP: fixtures missing in %s and tests/fixtures/gen-certstore.sh not found "
		       "(run from the source tree, or set KTLSD_FIXTURES or KTLSD_SRCDIR)\n",
		       fx_dir);
		exit(77);
	}
	snprintf(cmd, sizeof(cmd), "sh '%s' '%s' >&2", script, base);
	if (system(cmd) != 0 || !fx_complete()) {
		printf("SKIP: %s failed to generate the fixtures into %s\n", script, base);
		exit(77);
	}
}

/* fx("cats.pem") → "<fixtures>/certstore/cats.pem", in one of 8 rotating buffers. */
static inline const char *fx(const char *name)
{
	static char bufs[8][2 * PATH_MAX];
	static unsigned int next;
	char *b = bufs[next++ % 8];

	snprintf(b, sizeof(bufs[0]), "%s/%s", fx_dir, name);
	return b;
}

struct hs_result {
	bool cli_ok, srv_ok;
	int cli_reason, srv_reason; /* ERR_GET_REASON of the failure, 0 if none */
};

/* One handshake step of one side: 1 done, 0 wants I/O, -1 failed (reason recorded). */
static inline int hs_step(SSL *ssl, int *reason)
{
	int r = SSL_do_handshake(ssl), e;

	if (r == 1)
		return 1;
	e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	*reason = ERR_GET_REASON(ERR_peek_last_error());
	ERR_clear_error();
	return -1;
}

/* Runs the handshake between cli and srv over a BIO pair until each side has finished or failed
 * (the other side is then given the chance to read the alert). Consumes neither SSL. */
static inline struct hs_result hs_run(SSL *cli, SSL *srv)
{
	struct hs_result res = { 0 };
	int cst = 0, sst = 0;
	BIO *cb = NULL, *sb = NULL;

	if (!BIO_new_bio_pair(&cb, 0, &sb, 0))
		return res;
	SSL_set_bio(cli, cb, cb);
	SSL_set_bio(srv, sb, sb);
	SSL_set_connect_state(cli);
	SSL_set_accept_state(srv);
	for (int i = 0; i < 64 && (cst == 0 || sst == 0); i++) {
		if (cst == 0)
			cst = hs_step(cli, &res.cli_reason);
		if (sst == 0)
			sst = hs_step(srv, &res.srv_reason);
		if ((cst < 0 || sst < 0) && i > 8)
			break;
	}
	/* TLS 1.3: the client finishes before the server has seen its certificate; read once so
	 * a server-side refusal (an alert) reaches the client. */
	if (cst == 1 && sst < 0) {
		char byte;

		if (SSL_read(cli, &byte, 1) <= 0) {
			res.cli_reason = ERR_GET_REASON(ERR_peek_last_error());
			ERR_clear_error();
			cst = -1;
		}
	}
	res.cli_ok = cst == 1;
	res.srv_ok = sst == 1;
	return res;
}

/* A client context: version range (0 = any), TLS ≤1.2 ciphers, sigalgs, groups (NULL = OpenSSL's
 * defaults), security level (-1 = default). No verification: tests compare the peer certificate
 * themselves. */
static inline SSL_CTX *client_ctx(int maxver, const char *ciphers, const char *sigalgs,
				  const char *groups, int seclevel)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		return NULL;
	if (seclevel >= 0)
		SSL_CTX_set_security_level(ctx, seclevel);
	if (maxver)
		SSL_CTX_set_max_proto_version(ctx, maxver);
	if (maxver && maxver < TLS1_2_VERSION)
		SSL_CTX_set_min_proto_version(ctx, maxver);
	if ((ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) ||
	    (sigalgs && SSL_CTX_set1_sigalgs_list(ctx, sigalgs) != 1) ||
	    (groups && SSL_CTX_set1_groups_list(ctx, groups) != 1)) {
		fprintf(stderr, "client_ctx: OpenSSL refused ciphers/sigalgs/groups\n");
		ERR_print_errors_fp(stderr);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

#endif
