/* test_certstore_hello — the ClientHello side of certificate selection, through real handshakes
 * between two SSL objects over a BIO pair in this process:
 *   - the certificate the client receives for clients restricted to RSA or ECDSA (signature
 *     algorithms, TLS 1.2 ciphers, groups), TLS 1.2 and 1.3, and a server policy restricted too;
 *   - the refused handshake (rule 5) and the alert the client gets;
 *   - certstore_hello_from_ssl's prediction ("can this client use an RSA / ECDSA P-256 / P-384
 *     certificate?") against what OpenSSL then accepts with that certificate alone. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "certstore.h"
#include "certstore_testutil.h"

static const char *const names[] = { "www-rsa", "www-ec",    "big-rsa",	 "big-ec384",
				     "cats",	"secure-ec", "wild-org", "default" };
#define N_NAMES (sizeof(names) / sizeof(names[0]))
static struct certstore_cert *loaded[N_NAMES];

static struct certstore_cert *cert_by_name(const char *name)
{
	for (size_t i = 0; i < N_NAMES; i++)
		if (strcmp(names[i], name) == 0)
			return loaded[i];
	fail_msg("no fixture %s", name);
	return NULL;
}

static int load_all(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_NAMES; i++) {
		char cert[64], key[64], err[512];

		snprintf(cert, sizeof(cert), "%s.chain.pem", names[i]);
		snprintf(key, sizeof(key), "%s.key", names[i]);
		if (certstore_cert_load(fx(cert), fx(key), &loaded[i], err, sizeof(err)) != 0) {
			fprintf(stderr, "%s\n", err);
			return -1;
		}
	}
	return 0;
}

static int free_all(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_NAMES; i++)
		certstore_cert_free(loaded[i]);
	return 0;
}

/* The server side: either the whole ClientHello callback (select), or only recording what
 * certstore_hello_from_ssl says while a fixed certificate is installed. */
struct srv {
	struct certstore_cert *certs[8];
	size_t n;
	bool select;
	int calls, chosen, al, hello_ret;
	struct certstore_hello hello;
	enum certstore_match how;
};

static int hello_cb(SSL *ssl, int *al, void *arg)
{
	struct srv *s = arg;
	int r;

	s->calls++;
	if (!s->select) {
		s->hello_ret = certstore_hello_from_ssl(ssl, &s->hello);
		return SSL_CLIENT_HELLO_SUCCESS;
	}
	r = certstore_on_client_hello_ex(ssl, s->certs, s->n, al, &s->chosen, &s->hello, &s->how);
	s->al = r == SSL_CLIENT_HELLO_SUCCESS ? 0 : *al;
	return r;
}

/* A server context: version range (0 = OpenSSL's default), TLS ≤1.2 cipher list (may carry
 * "@SECLEVEL=n"), and the ClientHello callback. */
static SSL_CTX *server_ctx(struct srv *s, int minver, int maxver, const char *ciphers)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(ctx);
	if (minver)
		SSL_CTX_set_min_proto_version(ctx, minver);
	if (maxver)
		SSL_CTX_set_max_proto_version(ctx, maxver);
	if (ciphers)
		assert_int_equal(SSL_CTX_set_cipher_list(ctx, ciphers), 1);
	SSL_CTX_set_client_hello_cb(ctx, hello_cb, s);
	return ctx;
}

/* A client: highest version (0 = TLS 1.3), TLS ≤1.2 ciphers, sigalgs, groups (NULL: defaults). */
struct client {
	int max;
	const char *ciphers, *sigalgs, *groups;
};
#define ANY13                                                                                      \
	{                                                                                          \
		0, NULL, NULL, NULL                                                                \
	}
#define ANY12                                                                                      \
	{                                                                                          \
		TLS1_2_VERSION, NULL, NULL, NULL                                                   \
	}
#define RSA13                                                                                      \
	{                                                                                          \
		0, NULL, "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512", NULL       \
	}
#define ECDSA13                                                                                    \
	{                                                                                          \
		0, NULL, "ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384", NULL                     \
	}

static const struct hs_case {
	const char *what;
	const char *certs; /* listener order */
	const char *sni;   /* NULL: none sent */
	struct client cli;
	int srv_max;
	const char *srv_ciphers;
	const char *want; /* NULL: the handshake is refused */
} hs_cases[] = {
	{ "1.3, any client: ECDSA preferred", "www-rsa www-ec", "www.example.com", ANY13, 0, NULL,
	  "www-ec" },
	{ "1.3, RSA-PSS sigalgs only", "www-rsa www-ec", "www.example.com", RSA13, 0, NULL,
	  "www-rsa" },
	{ "1.3, ECDSA sigalgs only", "www-rsa www-ec", "www.example.com", ECDSA13, 0, NULL,
	  "www-ec" },
	{ "1.2, any client", "www-rsa www-ec", "www.example.com", ANY12, 0, NULL, "www-ec" },
	{ "1.2, ECDHE-RSA ciphers only",
	  "www-ec www-rsa",
	  "www.example.com",
	  { TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384", NULL, NULL },
	  0,
	  NULL,
	  "www-rsa" },
	{ "1.2, both ciphers, RSA sigalgs only",
	  "www-ec www-rsa",
	  "www.example.com",
	  { TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
	    "RSA+SHA256:RSA-PSS+SHA256", NULL },
	  0,
	  NULL,
	  "www-rsa" },
	{ "1.2, RSA key exchange only",
	  "www-ec www-rsa",
	  "www.example.com",
	  { TLS1_2_VERSION, "AES128-GCM-SHA256", NULL, NULL },
	  0,
	  NULL,
	  "www-rsa" },
	{ "1.2, ECDHE-ECDSA ciphers only",
	  "www-rsa www-ec",
	  "www.example.com",
	  { TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", NULL, NULL },
	  0,
	  NULL,
	  "www-ec" },
	{ "the listener's policy has only ECDHE-RSA ciphers", "www-ec www-rsa", "www.example.com",
	  ANY12, TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256", "www-rsa" },
	{ "no SNI: the first certificate", "www-rsa www-ec", NULL, ANY13, 0, NULL, "www-rsa" },
	{ "unknown SNI: the first certificate", "www-ec www-rsa", "nope.example.net", ANY13, 0,
	  NULL, "www-ec" },
	{ "P-384 certificate, client verifies P-256 only (1.3)",
	  "big-ec384 big-rsa",
	  "big.example.com",
	  { 0, NULL, "ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256", NULL },
	  0,
	  NULL,
	  "big-rsa" },
	{ "P-384 certificate, any client (1.3)", "big-ec384 big-rsa", "big.example.com", ANY13, 0,
	  NULL, "big-ec384" },
	{ "P-384 certificate, client groups without P-384 (1.2)",
	  "big-ec384 big-rsa",
	  "big.example.com",
	  { TLS1_2_VERSION, NULL, NULL, "P-256:X25519" },
	  0,
	  NULL,
	  "big-rsa" },
	{ "rule 5: best match ECDSA-only, RSA-only client (1.3)", "default secure-ec wild-org",
	  "secure.example.org", RSA13, 0, NULL, NULL },
	{ "rule 5: best match ECDSA-only, RSA-only client (1.2)",
	  "default secure-ec wild-org",
	  "secure.example.org",
	  { TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256", NULL, NULL },
	  0,
	  NULL,
	  NULL },
	{ "rule 5: the worse RSA match is fine for another name", "default secure-ec wild-org",
	  "www.example.org", RSA13, 0, NULL, "wild-org" },
	{ "uppercase SNI with a trailing dot", "default cats", "CATS.Pets.Example.COM.", ANY13, 0,
	  NULL, "cats" },
};

static void run_hs_case(const struct hs_case *t)
{
	struct srv s = { .select = true, .chosen = -2 };
	SSL_CTX *sctx, *cctx;
	struct hs_result res;
	SSL *srv, *cli;
	char list[128], *tok, *save = NULL;
	int want = -1;

	snprintf(list, sizeof(list), "%s", t->certs);
	for (tok = strtok_r(list, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		if (t->want && strcmp(tok, t->want) == 0)
			want = (int)s.n;
		s.certs[s.n++] = cert_by_name(tok);
	}
	sctx = server_ctx(&s, 0, t->srv_max, t->srv_ciphers);
	cctx = client_ctx(t->cli.max, t->cli.ciphers, t->cli.sigalgs, t->cli.groups, -1);
	assert_non_null(cctx);
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	if (t->sni)
		assert_int_equal(SSL_set_tlsext_host_name(cli, t->sni), 1);
	res = hs_run(cli, srv);
	if (t->want) {
		X509 *peer = SSL_get0_peer_certificate(cli);

		if (!res.cli_ok || !res.srv_ok || s.chosen != want || !peer ||
		    X509_cmp(peer, certstore_cert_leaf(s.certs[want])) != 0)
			fail_msg("%s: cli %d srv %d (reason %d/%d), chosen %d, want %s (%d)",
				 t->what, res.cli_ok, res.srv_ok, res.cli_reason, res.srv_reason,
				 s.chosen, t->want, want);
		/* The chain file's CA went along with the leaf. */
		assert_int_equal(sk_X509_num(SSL_get_peer_cert_chain(cli)),
				 1 + (int)certstore_cert_chain_len(s.certs[want]));
		assert_int_equal(s.hello.version, SSL_version(srv));
	} else {
		if (res.cli_ok || res.srv_ok || s.chosen != -1 ||
		    s.al != SSL_AD_HANDSHAKE_FAILURE ||
		    res.cli_reason != SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE)
			fail_msg(
			    "%s: want a handshake_failure alert; cli %d srv %d chosen %d al %d "
			    "client reason %d",
			    t->what, res.cli_ok, res.srv_ok, s.chosen, s.al, res.cli_reason);
	}
	assert_true(s.calls >= 1);
	if (t->sni)
		assert_true(s.hello.has_sni);
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void test_handshakes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(hs_cases) / sizeof(hs_cases[0]); i++)
		run_hs_case(&hs_cases[i]);
}

static void test_hello_sni_and_version(void **state)
{
	struct srv s = { .select = true };
	SSL_CTX *sctx, *cctx;
	SSL *srv, *cli;

	(void)state;
	s.certs[0] = cert_by_name("cats");
	s.n = 1;
	sctx = server_ctx(&s, 0, 0, NULL);
	cctx = client_ctx(TLS1_2_VERSION, NULL, NULL, NULL, -1);
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	assert_int_equal(SSL_set_tlsext_host_name(cli, "Ferrets.PETS.example.COM."), 1);
	assert_true(hs_run(cli, srv).srv_ok);
	assert_true(s.hello.has_sni);
	assert_string_equal(s.hello.sni, "ferrets.pets.example.com");
	assert_int_equal(s.hello.version, TLS1_2_VERSION);
	assert_int_equal(s.how, CERTSTORE_MATCH_WILDCARD);
	assert_int_equal(s.chosen, 0);
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	/* Outside a ClientHello callback there is nothing to read. */
	srv = SSL_new(sctx = SSL_CTX_new(TLS_server_method()));
	assert_int_equal(certstore_hello_from_ssl(srv, &s.hello), -EINVAL);
	SSL_free(srv);
	SSL_CTX_free(sctx);
}

/* A HelloRetryRequest (the client's key share is not in the server's groups): the callback runs
 * for both ClientHellos and installs the same certificate twice. */
static void test_hello_retry_request(void **state)
{
	struct srv s = { .select = true };
	SSL_CTX *sctx, *cctx;
	struct hs_result res;
	SSL *srv, *cli;

	(void)state;
	s.certs[0] = cert_by_name("www-rsa");
	s.certs[1] = cert_by_name("www-ec");
	s.n = 2;
	sctx = server_ctx(&s, 0, 0, NULL);
	assert_int_equal(SSL_CTX_set1_groups_list(sctx, "P-384"), 1);
	cctx = client_ctx(0, NULL, NULL, "X25519:P-384", -1);
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	assert_int_equal(SSL_set_tlsext_host_name(cli, "www.example.com"), 1);
	res = hs_run(cli, srv);
	assert_true(res.cli_ok && res.srv_ok);
	assert_int_equal(s.calls, 2);
	assert_int_equal(s.chosen, 1);
	assert_int_equal(X509_cmp(SSL_get0_peer_certificate(cli), certstore_cert_leaf(s.certs[1])),
			 0);
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/* Prediction against reality: for each client, certstore_hello_from_ssl's verdict for a
 * certificate must be exactly whether OpenSSL completes the handshake with that certificate as
 * the server's only one. Security levels are set with "@SECLEVEL=n" in the cipher strings. */
static const struct cons_case {
	const char *what;
	struct client cli;
	int srv_min, srv_max;
	const char *srv_ciphers;
} cons_cases[] = {
	{ .what = "1.3 any", .cli = ANY13 },
	{ .what = "1.3 RSA-PSS only", .cli = RSA13 },
	{ .what = "1.3 PKCS#1 only", .cli = { .sigalgs = "RSA+SHA256:RSA+SHA384" } },
	{ .what = "1.3 PKCS#1 + ECDSA P-256",
	  .cli = { .sigalgs = "RSA+SHA256:ecdsa_secp256r1_sha256" } },
	{ .what = "1.3 ECDSA P-384 only", .cli = { .sigalgs = "ecdsa_secp384r1_sha384" } },
	{ .what = "1.2 any", .cli = ANY12 },
	{ .what = "1.2 ECDHE-RSA only",
	  .cli = { TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256", NULL, NULL } },
	{ .what = "1.2 ECDHE-ECDSA only",
	  .cli = { TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", NULL, NULL } },
	{ .what = "1.2 RSA key exchange only",
	  .cli = { TLS1_2_VERSION, "AES256-GCM-SHA384", NULL, NULL } },
	{ .what = "1.2 RSA key exchange, ECDSA sigalgs only",
	  .cli = { TLS1_2_VERSION, "AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256",
		   "ECDSA+SHA256", NULL } },
	{ .what = "1.2 all ciphers, RSA sigalgs only",
	  .cli = { TLS1_2_VERSION, NULL, "RSA+SHA256", NULL } },
	{ .what = "1.2 all ciphers, ECDSA+SHA384 only (any curve in 1.2)",
	  .cli = { TLS1_2_VERSION, NULL, "ECDSA+SHA384", NULL } },
	{ .what = "1.2 groups P-384 only", .cli = { TLS1_2_VERSION, NULL, NULL, "P-384" } },
	{ .what = "1.2 groups X25519 only", .cli = { TLS1_2_VERSION, NULL, NULL, "X25519" } },
	{ .what = "1.2 SHA-1 sigalgs, server level 1",
	  .cli = { TLS1_2_VERSION, "ALL:@SECLEVEL=0", "RSA+SHA1:ECDSA+SHA1", NULL },
	  .srv_ciphers = "DEFAULT:@SECLEVEL=1" },
	{ .what = "1.2 SHA-1 sigalgs, server level 0",
	  .cli = { TLS1_2_VERSION, "ALL:@SECLEVEL=0", "RSA+SHA1:ECDSA+SHA1", NULL },
	  .srv_ciphers = "ALL:@SECLEVEL=0" },
	{ .what = "1.2 ECDSA+SHA224 only, server level 2",
	  .cli = { TLS1_2_VERSION, "ALL:@SECLEVEL=0", "ECDSA+SHA224:RSA+SHA224", NULL },
	  .srv_ciphers = "DEFAULT:@SECLEVEL=2" },
	{ .what = "1.2 ECDSA+SHA224 only, server level 3 (refuses SHA-224)",
	  .cli = { TLS1_2_VERSION, "ALL:@SECLEVEL=0", "ECDSA+SHA224", NULL },
	  .srv_ciphers = "DEFAULT:@SECLEVEL=3" },
	{ .what = "1.2 ECDSA SHA-224 and SHA-256, server level 3",
	  .cli = { TLS1_2_VERSION, "ALL:@SECLEVEL=0", "ECDSA+SHA224:ECDSA+SHA256", NULL },
	  .srv_ciphers = "DEFAULT:@SECLEVEL=3" },
	{ .what = "1.2 server policy ECDHE-ECDSA only",
	  .cli = ANY12,
	  .srv_max = TLS1_2_VERSION,
	  .srv_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" },
	{ .what = "1.2 server policy RSA key exchange only",
	  .cli = ANY12,
	  .srv_max = TLS1_2_VERSION,
	  .srv_ciphers = "AES128-GCM-SHA256" },
	{ .what = "1.2 client, 1.3-only server: no version",
	  .cli = ANY12,
	  .srv_min = TLS1_3_VERSION },
	{ .what = "1.1 (level 0 both sides)",
	  .cli = { TLS1_1_VERSION, "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0", NULL,
		   NULL },
	  .srv_min = TLS1_1_VERSION,
	  .srv_ciphers = "ALL:@SECLEVEL=0" },
	{ .what = "1.1 client, GCM-only server policy",
	  .cli = { TLS1_1_VERSION, "ALL:@SECLEVEL=0", NULL, NULL },
	  .srv_min = TLS1_1_VERSION,
	  .srv_max = TLS1_2_VERSION,
	  .srv_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0" },
};

/* Returns false when the policy's security level refuses the certificate itself (no handshake
 * to compare: certstore_cert_check_ctx reports that at config time). */
static bool run_cons_case(const struct cons_case *t, struct certstore_cert *cert)
{
	struct srv s = { .select = false };
	SSL_CTX *sctx, *cctx;
	struct hs_result res;
	SSL *srv, *cli;
	bool predicted, actual;

	sctx = server_ctx(&s, t->srv_min, t->srv_max, t->srv_ciphers);
	cctx = client_ctx(t->cli.max, t->cli.ciphers, t->cli.sigalgs, t->cli.groups, -1);
	assert_non_null(cctx);
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	if (certstore_apply(srv, cert) < 0) {
		char err[256];

		ERR_clear_error();
		assert_int_equal(certstore_cert_check_ctx(sctx, cert, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "refused by the listener's TLS settings"));
		predicted = false;
		goto out;
	}
	predicted = true;
	res = hs_run(cli, srv);
	assert_int_equal(s.hello_ret, 0);
	predicted = certstore_hello_can_use(&s.hello, cert);
	actual = res.cli_ok && res.srv_ok;
	if (s.hello.version == 0) /* no version: both said usable, OpenSSL refuses the version */
		actual = predicted && !res.srv_ok;
	if (predicted != actual)
		fail_msg("%s, %s: predicted %s (version %#x ecdsa %d rsa %d bad %#x), OpenSSL %s "
			 "(server reason %d: %s)",
			 t->what, certstore_cert_key_desc(cert), predicted ? "usable" : "unusable",
			 s.hello.version, s.hello.ecdsa_ok, s.hello.rsa_ok,
			 s.hello.ecdsa_curves_bad, actual ? "completed" : "failed", res.srv_reason,
			 ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, res.srv_reason)));
	if (actual && s.hello.version)
		assert_int_equal(s.hello.version, SSL_version(srv));
	predicted = true;
out:
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	return predicted;
}

static void test_prediction_matches_openssl(void **state)
{
	static const char *const certs[] = { "www-rsa", "www-ec", "big-ec384" };

	(void)state;
	for (size_t i = 0; i < sizeof(cons_cases) / sizeof(cons_cases[0]); i++) {
		size_t ran = 0;

		for (size_t k = 0; k < sizeof(certs) / sizeof(certs[0]); k++)
			ran += run_cons_case(&cons_cases[i], cert_by_name(certs[k]));
		if (ran == 0)
			fail_msg("%s: no certificate is allowed by the server", cons_cases[i].what);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshakes),
		cmocka_unit_test(test_hello_sni_and_version),
		cmocka_unit_test(test_hello_retry_request),
		cmocka_unit_test(test_prediction_matches_openssl),
	};

	fx_init();
	return cmocka_run_group_tests_name("certstore ClientHello", tests, load_all, free_all);
}
