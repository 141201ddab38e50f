/* test_mtls — client certificate authentication through real in-memory handshakes (TLS 1.2 and
 * 1.3): required / optional / none, revoked, expired, unknown CA, the depth limit, the CA names
 * the client is sent, what the logs get, and every config error naming its file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mtls.h"
#include "certstore_testutil.h"

struct run {
	struct hs_result res;
	char reason[128];
	char subject[256];
	int subject_ret;
	char cn[64];
	int cn_ret;
	int ca_names; /* CA names the client received */
};

/* A handshake with a server whose ctx mtls_configure set up (ca, crl, depth), and a client
 * presenting certificate NAME (NAME.chain.pem + NAME.key; NULL: none). */
static struct run handshake(int maxver, enum mtls_mode mode, const char *ca, const char *crl,
			    int depth, const char *client)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = client_ctx(maxver, NULL, NULL, NULL, -1);
	struct run r = { 0 };
	char err[512] = "";
	SSL *srv, *cli;

	assert_non_null(sctx);
	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(sctx, fx("www-ec.chain.pem")), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(sctx, fx("www-ec.key"), SSL_FILETYPE_PEM), 1);
	if (mtls_configure(sctx, mode, ca ? fx(ca) : NULL, crl ? fx(crl) : NULL, depth, err,
			   sizeof(err)) != 0)
		fail_msg("mtls_configure: %s", err);
	if (client) {
		char chain[64], key[64];

		snprintf(chain, sizeof(chain), "%s.chain.pem", client);
		snprintf(key, sizeof(key), "%s.key", client);
		assert_int_equal(SSL_CTX_use_certificate_chain_file(cctx, fx(chain)), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(cctx, fx(key), SSL_FILETYPE_PEM), 1);
	}
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	r.res = hs_run(cli, srv);
	snprintf(r.reason, sizeof(r.reason), "%s", mtls_verify_reason(srv));
	r.subject_ret = mtls_peer_subject(srv, r.subject, sizeof(r.subject));
	r.cn_ret = mtls_peer_cn(srv, r.cn, sizeof(r.cn));
	r.ca_names =
	    SSL_get_client_CA_list(cli) ? sk_X509_NAME_num(SSL_get_client_CA_list(cli)) : 0;
	ERR_clear_error();
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	return r;
}

static const int versions[] = { TLS1_2_VERSION, TLS1_3_VERSION };

static void test_required(void **state)
{
	(void)state;
	for (size_t i = 0; i < 2; i++) {
		int v = versions[i];
		struct run r = handshake(v, MTLS_MODE_REQUIRED, "ca.pem", "ca.crl", 2, "client");

		assert_true(r.res.srv_ok && r.res.cli_ok);
		assert_string_equal(r.reason, "ok");
		assert_int_equal(r.subject_ret, 0);
		assert_string_equal(r.subject, "CN=client one");
		assert_int_equal(r.cn_ret, 0);
		assert_string_equal(r.cn, "client one");
		assert_int_equal(r.ca_names, 1);

		r = handshake(v, MTLS_MODE_REQUIRED, "ca.pem", "ca.crl", 2, "client-rsa");
		assert_true(r.res.srv_ok);

		r = handshake(v, MTLS_MODE_REQUIRED, "ca.pem", "ca.crl", 2, NULL);
		assert_false(r.res.srv_ok);
		assert_false(r.res.cli_ok);
		assert_string_equal(r.reason, "no client certificate");
		assert_int_equal(r.subject_ret, -ENOENT);
		assert_string_equal(r.subject, "");

		r = handshake(v, MTLS_MODE_REQUIRED, "ca.pem", "ca.crl", 2, "client-revoked");
		assert_false(r.res.srv_ok);
		assert_false(r.res.cli_ok);
		assert_string_equal(r.reason, "certificate revoked");
		assert_true(r.subject_ret < 0);

		r = handshake(v, MTLS_MODE_REQUIRED, "ca.pem", "ca.crl", 2, "client-expired");
		assert_false(r.res.srv_ok);
		assert_string_equal(r.reason, "certificate has expired");

		r = handshake(v, MTLS_MODE_REQUIRED, "ca.pem", "ca.crl", 2, "client-other");
		assert_false(r.res.srv_ok);
		assert_string_equal(r.reason, "self-signed certificate in certificate chain");

		/* A server certificate (extendedKeyUsage serverAuth) of the right CA. */
		r = handshake(v, MTLS_MODE_REQUIRED, "ca.pem", NULL, 2, "www-rsa");
		assert_false(r.res.srv_ok);
		assert_string_equal(r.reason, "unsuitable certificate purpose");
	}
}

static void test_optional_and_none(void **state)
{
	struct run r;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		int v = versions[i];

		r = handshake(v, MTLS_MODE_OPTIONAL, "ca.pem", "ca.crl", -1, NULL);
		assert_true(r.res.srv_ok && r.res.cli_ok);
		assert_string_equal(r.reason, "no client certificate");
		assert_int_equal(r.subject_ret, -ENOENT);

		r = handshake(v, MTLS_MODE_OPTIONAL, "ca.pem", "ca.crl", -1, "client");
		assert_true(r.res.srv_ok);
		assert_string_equal(r.reason, "ok");
		assert_string_equal(r.subject, "CN=client one");

		/* Optional, but a certificate that is sent must verify. */
		r = handshake(v, MTLS_MODE_OPTIONAL, "ca.pem", "ca.crl", -1, "client-revoked");
		assert_false(r.res.srv_ok);
		assert_string_equal(r.reason, "certificate revoked");

		r = handshake(v, MTLS_MODE_NONE, NULL, NULL, -1, "client");
		assert_true(r.res.srv_ok && r.res.cli_ok);
		assert_string_equal(r.reason, "not requested");
		assert_int_equal(r.subject_ret, -ENOENT);
		assert_int_equal(r.ca_names, 0);
	}
}

static void test_ca_bundle_and_crls(void **state)
{
	struct run r;

	(void)state;
	/* Two CAs, a CRL for each in one file: both CAs' names are sent, both clients accepted. */
	r = handshake(TLS1_3_VERSION, MTLS_MODE_REQUIRED, "ca+otherca.pem", "ca+otherca.crl", 2,
		      "client-other");
	assert_true(r.res.srv_ok);
	assert_int_equal(r.ca_names, 2);
	assert_string_equal(r.cn, "client of another CA");
	r = handshake(TLS1_3_VERSION, MTLS_MODE_REQUIRED, "ca+otherca.pem", "ca+otherca.crl", 2,
		      "client-revoked");
	assert_string_equal(r.reason, "certificate revoked");
	/* CRL checking needs a CRL from the client certificate's issuer. */
	r = handshake(TLS1_3_VERSION, MTLS_MODE_REQUIRED, "ca+otherca.pem", "ca.crl", 2,
		      "client-other");
	assert_false(r.res.srv_ok);
	assert_string_equal(r.reason, "unable to get certificate CRL");
	/* Without a CRL file, no revocation check. */
	r = handshake(TLS1_2_VERSION, MTLS_MODE_REQUIRED, "ca.pem", NULL, 2, "client-revoked");
	assert_true(r.res.srv_ok);
}

static void test_depth(void **state)
{
	struct run r;

	(void)state;
	/* client-inter is issued by an intermediate CA that the client sends; "ca" is trusted. */
	r = handshake(TLS1_3_VERSION, MTLS_MODE_REQUIRED, "ca.pem", NULL, 0, "client-inter");
	assert_false(r.res.srv_ok);
	assert_string_equal(r.reason, "certificate chain too long");
	r = handshake(TLS1_3_VERSION, MTLS_MODE_REQUIRED, "ca.pem", NULL, 1, "client-inter");
	assert_true(r.res.srv_ok);
	assert_string_equal(r.subject, "CN=client via intermediate");
	r = handshake(TLS1_2_VERSION, MTLS_MODE_REQUIRED, "ca.pem", NULL, -1, "client-inter");
	assert_true(r.res.srv_ok);
	r = handshake(TLS1_2_VERSION, MTLS_MODE_REQUIRED, "ca.pem", NULL, 0, "client");
	assert_true(r.res.srv_ok);
}

static const struct bad_cfg {
	enum mtls_mode mode;
	const char *ca, *crl;
	int depth, ret;
	const char *named, *says;
} bad_cfgs[] = {
	{ MTLS_MODE_REQUIRED, "missing.pem", NULL, 2, -ENOENT, "missing.pem", ": cannot open" },
	{ MTLS_MODE_REQUIRED, "empty.pem", NULL, 2, -EINVAL, "empty.pem", ": empty file" },
	{ MTLS_MODE_REQUIRED, "cats.der", NULL, 2, -EINVAL, "cats.der",
	  ": not a PEM file (it looks like DER; convert it with: openssl x509 -inform DER" },
	{ MTLS_MODE_REQUIRED, "garbage.pem", NULL, 2, -EINVAL, "garbage.pem",
	  ": certificate #1 is malformed" },
	{ MTLS_MODE_REQUIRED, "ca.crl", NULL, 2, -EINVAL, "ca.crl", ": no CA certificate found" },
	{ MTLS_MODE_OPTIONAL, "ca.pem", "missing.crl", 2, -ENOENT, "missing.crl", ": cannot open" },
	{ MTLS_MODE_REQUIRED, "ca.pem", "ca.crl.der", 2, -EINVAL, "ca.crl.der",
	  "openssl crl -inform DER" },
	{ MTLS_MODE_REQUIRED, "ca.pem", "ca.pem", 2, -EINVAL, "ca.pem", ": no CRL found" },
	{ MTLS_MODE_REQUIRED, "ca.pem", "otherca.crl", 2, -EINVAL, "otherca.crl",
	  ": CRL #1 is from \"CN=otherca test CA\", which is not a CA of " },
	{ MTLS_MODE_REQUIRED, "ca.pem", "ca+otherca.crl", 2, -EINVAL, "ca+otherca.crl",
	  ": CRL #2 is from \"CN=otherca test CA\"" },
	{ MTLS_MODE_REQUIRED, "ca.pem", "ca-expired.crl", 2, -EINVAL, "ca-expired.crl",
	  ": CRL #1 from \"CN=ca test CA\" is out of date (past its nextUpdate)" },
	{ MTLS_MODE_REQUIRED, "ca.pem", NULL, 101, -EINVAL, "", "client_auth depth 101" },
	{ MTLS_MODE_REQUIRED, NULL, NULL, 2, -EINVAL, "", "client_auth mode \"required\" needs a" },
	{ (enum mtls_mode)7, "ca.pem", NULL, 2, -EINVAL, "", "unknown client_auth mode 7" },
};

static void test_config_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cfgs) / sizeof(bad_cfgs[0]); i++) {
		const struct bad_cfg *b = &bad_cfgs[i];
		SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
		const char *named = b->named[0] ? fx(b->named) : "";
		char err[512] = "";
		int ret;

		ret = mtls_configure(ctx, b->mode, b->ca ? fx(b->ca) : NULL,
				     b->crl ? fx(b->crl) : NULL, b->depth, err, sizeof(err));
		if (ret != b->ret || strncmp(err, named, strlen(named)) || !strstr(err, b->says))
			fail_msg("case %zu: got %d \"%s\", want %d \"%s...%s\"", i, ret, err,
				 b->ret, b->named, b->says);
		/* A refused configuration leaves the context as it was. */
		assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
		SSL_CTX_free(ctx);
	}
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_modes(void **state)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char err[256];

	(void)state;
	/* The verify mode each sets, and back to none. */
	assert_int_equal(
	    mtls_configure(ctx, MTLS_MODE_REQUIRED, fx("ca.pem"), NULL, 3, err, sizeof(err)), 0);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx),
			 SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	assert_int_equal(SSL_CTX_get_verify_depth(ctx), 3);
	assert_int_equal(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(ctx)), 1);
	assert_int_equal(
	    mtls_configure(ctx, MTLS_MODE_OPTIONAL, fx("ca.pem"), NULL, -1, err, sizeof(err)), 0);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
	assert_int_equal(mtls_configure(ctx, MTLS_MODE_NONE, NULL, NULL, -1, err, sizeof(err)), 0);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
	assert_null(SSL_CTX_get_client_CA_list(ctx));
	SSL_CTX_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_required),	   cmocka_unit_test(test_optional_and_none),
		cmocka_unit_test(test_ca_bundle_and_crls), cmocka_unit_test(test_depth),
		cmocka_unit_test(test_config_errors),	   cmocka_unit_test(test_modes),
	};

	fx_init();
	return cmocka_run_group_tests_name("mtls", tests, NULL, NULL);
}
