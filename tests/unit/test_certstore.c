/* test_certstore — certificate loading and its errors, name matching, the domains check, and
 * selection (docs/configuration-certificates.md), table-driven over real certificates from
 * tests/fixtures/gen-certstore.sh. The ClientHello side is in test_certstore_hello.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "certstore.h"
#include "certstore_testutil.h"

/* ---- loading ---------------------------------------------------------------------------- */

static struct certstore_cert *load_ok(const char *cert, const char *key)
{
	struct certstore_cert *c = NULL;
	char err[512] = "";
	int ret = certstore_cert_load(fx(cert), fx(key), &c, err, sizeof(err));

	if (ret != 0)
		fail_msg("loading %s: %d %s", cert, ret, err);
	return c;
}

/* Loads a certificate NAME from NAME.chain.pem + NAME.key. */
static struct certstore_cert *load_named(const char *name)
{
	char cert[128], key[128];

	snprintf(cert, sizeof(cert), "%s.chain.pem", name);
	snprintf(key, sizeof(key), "%s.key", name);
	return load_ok(cert, key);
}

static void test_load_rsa(void **state)
{
	struct certstore_cert *c = load_ok("cats.chain.pem", "cats.key");
	time_t now = time(NULL);

	(void)state;
	assert_string_equal(certstore_cert_key_desc(c), "RSA-2048");
	assert_string_equal(certstore_cert_subject(c), "CN=cats.pets.example.com");
	/* SANs in order; the CN duplicates the first and is not repeated. */
	assert_int_equal(certstore_cert_name_count(c), 3);
	assert_string_equal(certstore_cert_name(c, 0), "cats.pets.example.com");
	assert_string_equal(certstore_cert_name(c, 1), "*.pets.example.com");
	assert_string_equal(certstore_cert_name(c, 2), "*.example.com");
	assert_null(certstore_cert_name(c, 3));
	assert_int_equal(certstore_cert_chain_len(c), 1);
	assert_false(certstore_cert_is_expired(c, now));
	assert_true(certstore_cert_not_after(c) > now + 800L * 86400);
	assert_true(certstore_cert_not_before(c) <= now);
	assert_non_null(certstore_cert_leaf(c));
	assert_string_equal(certstore_cert_path(c), fx("cats.chain.pem"));
	certstore_cert_free(c);
	certstore_cert_free(NULL);
}

static void test_load_ecdsa(void **state)
{
	struct certstore_cert *c = load_ok("www-ec.pem", "www-ec.key");
	struct certstore_cert *b = load_ok("big-ec384.pem", "big-ec384.key");

	(void)state;
	assert_string_equal(certstore_cert_key_desc(c), "ECDSA-P256");
	assert_int_equal(certstore_cert_chain_len(c), 0);
	assert_string_equal(certstore_cert_key_desc(b), "ECDSA-P384");
	certstore_cert_free(c);
	certstore_cert_free(b);
}

static void test_load_names(void **state)
{
	struct certstore_cert *n = load_ok("nosan.pem", "nosan.key");
	struct certstore_cert *u = load_ok("upper.pem", "upper.key");
	struct certstore_cert *m = load_ok("combined.pem", "combined.pem");

	(void)state;
	/* No subjectAltName: the CN is the name. */
	assert_int_equal(certstore_cert_name_count(n), 1);
	assert_string_equal(certstore_cert_name(n, 0), "nosan.example.com");
	/* Lowercased, trailing dot removed, CN (= first SAN) not repeated. */
	assert_int_equal(certstore_cert_name_count(u), 2);
	assert_string_equal(certstore_cert_name(u, 0), "upper.example.com");
	assert_string_equal(certstore_cert_name(u, 1), "mixed.example.net");
	/* Certificate, chain and key in one file. */
	assert_int_equal(certstore_cert_chain_len(m), 1);
	certstore_cert_free(n);
	certstore_cert_free(u);
	certstore_cert_free(m);
}

static void test_load_expired(void **state)
{
	struct certstore_cert *c = load_ok("expired.pem", "expired.key");

	(void)state;
	/* Loads (expiry is not enforced) and says it is expired: 2020-02-01T00:00:00Z. */
	assert_int_equal(certstore_cert_not_after(c), 1580515200);
	assert_true(certstore_cert_is_expired(c, time(NULL)));
	assert_false(certstore_cert_is_expired(c, 1580515200 - 1));
	certstore_cert_free(c);
}

static const struct bad_load {
	const char *cert, *key;
	int ret;
	const char *named; /* the file the message must start with */
	const char *says;
} bad_loads[] = {
	{ "missing.pem", "cats.key", -ENOENT, "missing.pem", ": cannot open: No such file" },
	{ "cats.pem", "missing.key", -ENOENT, "missing.key", ": cannot open: No such file" },
	{ "cats.der", "cats.key", -EINVAL, "cats.der",
	  "not a PEM file (it looks like DER; "
	  "convert it with: openssl x509 -inform DER" },
	{ "cats.pem", "cats.key.der", -EINVAL, "cats.key.der", "openssl pkey -inform DER" },
	{ "empty.pem", "cats.key", -EINVAL, "empty.pem", ": empty file" },
	{ "cats.pem", "empty.pem", -EINVAL, "empty.pem", ": empty file" },
	{ "text.txt", "cats.key", -EINVAL, "text.txt", ": not a PEM file (no \"-----BEGIN\"" },
	{ "garbage.pem", "cats.key", -EINVAL, "garbage.pem", ": certificate #1 is malformed" },
	{ "cats.key", "cats.key", -EINVAL, "cats.key", ": no certificate found" },
	{ "cats.pem", "cats.pem", -EINVAL, "cats.pem", ": no private key found" },
	{ "cats.pem", "cats-enc.key", -ENOTSUP, "cats-enc.key",
	  ": private key is encrypted (only unencrypted PEM keys are supported" },
	{ "cats.pem", "cats-enc-trad.key", -ENOTSUP, "cats-enc-trad.key",
	  ": private key is encrypted" },
	{ "cats.pem", "dogs.key", -EINVAL, "dogs.key",
	  ": private key does not match certificate " },
	{ "cats.pem", "www-ec.key", -EINVAL, "www-ec.key", ": private key does not match" },
	{ "reversed.pem", "cats.key", -EINVAL, "cats.key",
	  ": private key matches certificate #2 of " },
	{ "ed25519.pem", "ed25519.key", -ENOTSUP, "ed25519.pem",
	  ": ED25519 keys are not supported" },
	{ "k1.pem", "k1.key", -ENOTSUP, "k1.pem", ": ECDSA curve secp256k1 is not supported" },
	{ "ca-db", "cats.key", -EINVAL, "ca-db", ": not a regular file" },
};

static void test_load_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_loads) / sizeof(bad_loads[0]); i++) {
		const struct bad_load *b = &bad_loads[i];
		struct certstore_cert *c = (void *)1;
		char err[512] = "";
		int ret = certstore_cert_load(fx(b->cert), fx(b->key), &c, err, sizeof(err));

		if (ret != b->ret || c != NULL ||
		    strncmp(err, fx(b->named), strlen(fx(b->named))) || !strstr(err, b->says))
			fail_msg("%s + %s: got %d \"%s\", want %d \"%s...%s\"", b->cert, b->key,
				 ret, err, b->ret, b->named, b->says);
	}
	/* The mismatch message names both files; no error buffer is fine too. */
	{
		struct certstore_cert *c = NULL;
		char err[512];

		assert_int_equal(
		    certstore_cert_load(fx("cats.pem"), fx("dogs.key"), &c, err, sizeof(err)),
		    -EINVAL);
		assert_non_null(strstr(err, fx("cats.pem")));
		assert_int_equal(certstore_cert_load(fx("empty.pem"), fx("cats.key"), &c, NULL, 0),
				 -EINVAL);
	}
	assert_int_equal(ERR_peek_error(), 0); /* nothing left on OpenSSL's error queue */
}

/* ---- domains (the SNI binding) ----------------------------------------------------------- */

static void domains_case(struct certstore_cert *c, int want, const char *expect, size_t n, ...)
{
	const char *d[8];
	char err[512] = "";
	va_list ap;
	int ret;

	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		d[i] = va_arg(ap, const char *);
	va_end(ap);
	ret = certstore_cert_check_domains(c, d, n, err, sizeof(err));
	if (ret != want || (expect && !strstr(err, expect)))
		fail_msg("domains %s...: got %d \"%s\", want %d \"%s\"", n ? d[0] : "", ret, err,
			 want, expect ? expect : "");
}

static void test_domains(void **state)
{
	struct certstore_cert *cats = load_named("cats"), *foo = load_named("foo"),
			      *wild = load_named("wild-com");

	(void)state;
	domains_case(cats, 0, NULL, 0);
	domains_case(cats, 0, NULL, 1, "cats.pets.example.com");
	domains_case(cats, 0, NULL, 1, "CATS.Pets.Example.com.");
	domains_case(cats, 0, NULL, 2, "cats.pets.example.com", "ferrets.pets.example.com");
	domains_case(cats, 0, NULL, 1, "*.pets.example.com");
	domains_case(cats, -EINVAL, "domain \"x.y.pets.example.com\" is not a name", 1,
		     "x.y.pets.example.com");
	domains_case(cats, -EINVAL, "\"example.com\"", 1, "example.com");
	domains_case(cats, -EINVAL, "\"*.cats.pets.example.com\"", 1, "*.cats.pets.example.com");
	domains_case(foo, -EINVAL,
		     "foo.chain.pem: domain \"bar.example.com\" is not a name of the certificate "
		     "(its names: foo.example.com)",
		     2, "foo.example.com", "bar.example.com");
	domains_case(wild, 0, NULL, 2, "*.example.com", "app.example.com");
	domains_case(wild, -EINVAL, "\"*.pets.example.com\"", 1, "*.pets.example.com");
	domains_case(wild, -EINVAL, "not a valid host name", 1, "");
	certstore_cert_free(cats);
	certstore_cert_free(foo);
	certstore_cert_free(wild);
}

/* ---- name matching ------------------------------------------------------------------------ */

static void test_name_match(void **state)
{
	static const struct {
		const char *name, *host;
		int score;
	} t[] = {
		{ "www.example.com", "www.example.com", CERTSTORE_SCORE_EXACT },
		{ "WWW.Example.com.", "www.EXAMPLE.com", CERTSTORE_SCORE_EXACT },
		{ "www.example.com", "www.example.com.", CERTSTORE_SCORE_EXACT },
		{ "www.example.com", "www.example.co", 0 },
		{ "www.example.com", "xwww.example.com", 0 },
		{ "*.example.com", "a.example.com", 11 },
		{ "*.example.com", "A.EXAMPLE.COM.", 11 },
		{ "*.pets.example.com", "ferrets.pets.example.com", 16 },
		{ "*.example.com", "ferrets.pets.example.com", 0 }, /* one label only */
		{ "*.example.com", "a.b.example.com", 0 },
		{ "*.example.com", "example.com", 0 },
		{ "*.example.com", ".example.com", 0 },
		{ "*.example.com", "aexample.com", 0 },
		{ "*.com", "example.com", 0 }, /* needs two labels after the star */
		{ "*.", "a.", 0 },
		{ "w*.example.com", "www.example.com", 0 }, /* partial wildcards match nothing */
		{ "a.*.example.com", "a.b.example.com", 0 },
		{ "*.example.com", "*.example.com", 0 }, /* a host is never a pattern */
		{ "", "example.com", 0 },
		{ "example.com", "", 0 },
		{ ".", ".", 0 },
		/* IDN: SNI carries A-labels (RFC 6066); they compare like any name,
		   case-insensitively. */
		{ "xn--bcher-kva.example.com", "XN--BCHER-KVA.Example.COM", CERTSTORE_SCORE_EXACT },
		{ "*.xn--caf-dma.example", "menu.XN--CAF-DMA.example.", 19 },
		{ "xn--bcher-kva.example.com", "xn--bcher-kvb.example.com", 0 },
		/* A raw UTF-8 U-label in the SNI does not match the certificate's A-label. */
		{ "xn--bcher-kva.example.com",
		  "b\xc3\xbc"
		  "cher.example.com",
		  0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int s = certstore_name_match(t[i].name, t[i].host);

		if (s != t[i].score)
			fail_msg("match(%s, %s) = %d, want %d", t[i].name, t[i].host, s,
				 t[i].score);
	}
}

/* ---- selection ------------------------------------------------------------------------- */

static const char *const fixture_names[] = {
	"cats",	     "dogs",   "cats-ec",  "www-rsa",	"www-ec",    "big-rsa",
	"big-ec384", "foo",    "wild-com", "wild-pets", "secure-ec", "wild-org",
	"default",   "nosan",  "upper",	   "many01",	"many02",    "many03",
	"many04",    "many05", "many06",   "many07",	"many08",    "many09",
	"many10",    "many11", "many12",   "many13",	"many14",    "many15",
};
#define N_FIXTURES (sizeof(fixture_names) / sizeof(fixture_names[0]))
static struct certstore_cert *loaded[N_FIXTURES];

static struct certstore_cert *cert_by_name(const char *name)
{
	for (size_t i = 0; i < N_FIXTURES; i++)
		if (strcmp(fixture_names[i], name) == 0)
			return loaded[i];
	fail_msg("no fixture %s", name);
	return NULL;
}

static int load_all(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_FIXTURES; i++)
		loaded[i] = load_named(fixture_names[i]);
	return 0;
}

static int free_all(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_FIXTURES; i++)
		certstore_cert_free(loaded[i]);
	return 0;
}

#define E 1 /* ecdsa_ok */
#define R 2 /* rsa_ok */
#define ER (E | R)
#define MANY                                                                                       \
	"many01 many02 many03 many04 many05 many06 many07 many08 many09 many10 many11 many12 "     \
	"many13 many14 many15"

static const struct sel_case {
	const char *certs; /* listener order, space-separated */
	const char *sni;   /* NULL: no server_name */
	int ok;		   /* E|R */
	unsigned int bad;  /* ecdsa_curves_bad */
	const char *want;  /* NULL: -1 */
	enum certstore_match how;
} sel_cases[] = {
	/* The cats/dogs example of docs/configuration-certificates.md (both RSA). */
	{ "cats dogs", "cats.pets.example.com", ER, 0, "cats", CERTSTORE_MATCH_EXACT },
	{ "cats dogs", "dogs.pets.example.com", ER, 0, "dogs", CERTSTORE_MATCH_EXACT },
	{ "cats dogs", "ferrets.pets.example.com", ER, 0, "cats", CERTSTORE_MATCH_WILDCARD },
	{ "dogs cats", "ferrets.pets.example.com", ER, 0, "dogs", CERTSTORE_MATCH_WILDCARD },
	{ "cats dogs", "hamsters.example.com", ER, 0, "cats", CERTSTORE_MATCH_WILDCARD },
	{ "cats dogs", "a.b.example.com", ER, 0, "cats", CERTSTORE_MATCH_DEFAULT },
	{ "cats dogs", "unknown.example.org", ER, 0, "cats", CERTSTORE_MATCH_DEFAULT },
	{ "cats dogs", NULL, ER, 0, "cats", CERTSTORE_MATCH_NO_SNI },
	{ "dogs cats", NULL, ER, 0, "dogs", CERTSTORE_MATCH_NO_SNI },
	{ "cats dogs", "DOGS.Pets.Example.COM.", ER, 0, "dogs", CERTSTORE_MATCH_EXACT },
	{ "cats dogs", "Ferrets.PETS.example.com.", ER, 0, "cats", CERTSTORE_MATCH_WILDCARD },
	/* ... with an ECDSA twin of A: preferred among equals, never over a better match. */
	{ "cats dogs cats-ec", "ferrets.pets.example.com", ER, 0, "cats-ec",
	  CERTSTORE_MATCH_WILDCARD },
	{ "cats dogs cats-ec", "ferrets.pets.example.com", R, 0, "cats", CERTSTORE_MATCH_WILDCARD },
	{ "cats dogs cats-ec", "cats.pets.example.com", ER, 0, "cats-ec", CERTSTORE_MATCH_EXACT },
	{ "cats dogs cats-ec", "dogs.pets.example.com", ER, 0, "dogs", CERTSTORE_MATCH_EXACT },
	{ "cats dogs cats-ec", "dogs.pets.example.com", E, 0, NULL, CERTSTORE_MATCH_EXACT },
	/* Exact beats wildcard, whatever the order. */
	{ "wild-com foo", "foo.example.com", ER, 0, "foo", CERTSTORE_MATCH_EXACT },
	{ "wild-com foo", "bar.example.com", ER, 0, "wild-com", CERTSTORE_MATCH_WILDCARD },
	{ "foo wild-com", "bar.example.com", ER, 0, "wild-com", CERTSTORE_MATCH_WILDCARD },
	{ "wild-com foo", "example.com", ER, 0, "wild-com", CERTSTORE_MATCH_DEFAULT },
	/* Nested wildcards: *.pets.example.com for ferrets (*.example.com covers one label). */
	{ "wild-com wild-pets", "ferrets.pets.example.com", ER, 0, "wild-pets",
	  CERTSTORE_MATCH_WILDCARD },
	{ "wild-pets wild-com", "x.example.com", ER, 0, "wild-com", CERTSTORE_MATCH_WILDCARD },
	{ "wild-pets wild-com", "a.b.pets.example.com", ER, 0, "wild-pets",
	  CERTSTORE_MATCH_DEFAULT },
	/* ECDSA/RSA pairs with the same names, every combination, both orders. */
	{ "www-rsa www-ec", "www.example.com", ER, 0, "www-ec", CERTSTORE_MATCH_EXACT },
	{ "www-rsa www-ec", "www.example.com", E, 0, "www-ec", CERTSTORE_MATCH_EXACT },
	{ "www-rsa www-ec", "www.example.com", R, 0, "www-rsa", CERTSTORE_MATCH_EXACT },
	{ "www-rsa www-ec", "www.example.com", 0, 0, NULL, CERTSTORE_MATCH_EXACT },
	{ "www-ec www-rsa", "www.example.com", ER, 0, "www-ec", CERTSTORE_MATCH_EXACT },
	{ "www-ec www-rsa", "www.example.com", E, 0, "www-ec", CERTSTORE_MATCH_EXACT },
	{ "www-ec www-rsa", "www.example.com", R, 0, "www-rsa", CERTSTORE_MATCH_EXACT },
	{ "www-ec www-rsa", "www.example.com", 0, 0, NULL, CERTSTORE_MATCH_EXACT },
	/* The curve counts: a P-384 certificate for a client that can only verify P-256. */
	{ "big-ec384 big-rsa", "big.example.com", ER, CERTSTORE_CURVE_P384, "big-rsa",
	  CERTSTORE_MATCH_EXACT },
	{ "big-ec384 big-rsa", "big.example.com", ER, CERTSTORE_CURVE_P256, "big-ec384",
	  CERTSTORE_MATCH_EXACT },
	{ "big-ec384 big-rsa", "big.example.com", E, CERTSTORE_CURVE_P384, NULL,
	  CERTSTORE_MATCH_EXACT },
	{ "www-ec www-rsa", "www.example.com", ER, CERTSTORE_CURVE_P256, "www-rsa",
	  CERTSTORE_MATCH_EXACT },
	{ "www-ec www-rsa", "www.example.com", ER, CERTSTORE_CURVE_P384, "www-ec",
	  CERTSTORE_MATCH_EXACT },
	/* Rule 5: the best match is ECDSA only, the client RSA only: fail, do not fall back to
	 * the worse-matching RSA wildcard. */
	{ "default secure-ec wild-org", "secure.example.org", R, 0, NULL, CERTSTORE_MATCH_EXACT },
	{ "default secure-ec wild-org", "secure.example.org", E, 0, "secure-ec",
	  CERTSTORE_MATCH_EXACT },
	{ "default secure-ec wild-org", "other.example.org", R, 0, "wild-org",
	  CERTSTORE_MATCH_WILDCARD },
	/* No SNI or no match: C1, even when C1 is unusable and C2 would do. */
	{ "www-ec www-rsa", NULL, R, 0, NULL, CERTSTORE_MATCH_NO_SNI },
	{ "www-ec default", "unknown.example.com", R, 0, NULL, CERTSTORE_MATCH_DEFAULT },
	{ "www-ec default", "unknown.example.com", E, 0, "www-ec", CERTSTORE_MATCH_DEFAULT },
	/* CN-only certificate; names with capitals and trailing dots in the certificate. */
	{ "default nosan", "nosan.example.com", ER, 0, "nosan", CERTSTORE_MATCH_EXACT },
	{ "default upper", "UPPER.example.com", ER, 0, "upper", CERTSTORE_MATCH_EXACT },
	{ "default upper", "mixed.example.net.", ER, 0, "upper", CERTSTORE_MATCH_EXACT },
	/* One certificate: always it. */
	{ "foo", "other.example.net", ER, 0, "foo", CERTSTORE_MATCH_DEFAULT },
	/* Fifteen certificates on one listener. */
	{ MANY, "s15.many.example.com", E, 0, "many15", CERTSTORE_MATCH_EXACT },
	{ MANY, "s01.many.example.com", E, 0, "many01", CERTSTORE_MATCH_EXACT },
	{ MANY, "s08.many.example.com", E, 0, "many08", CERTSTORE_MATCH_EXACT },
	{ MANY, "s16.many.example.com", E, 0, "many01", CERTSTORE_MATCH_DEFAULT },
	{ MANY, NULL, E, 0, "many01", CERTSTORE_MATCH_NO_SNI },
};

static void test_select_table(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(sel_cases) / sizeof(sel_cases[0]); k++) {
		const struct sel_case *t = &sel_cases[k];
		struct certstore_cert *certs[16];
		struct certstore_hello h = { 0 };
		enum certstore_match how;
		char list[256], *tok, *save = NULL;
		size_t n = 0;
		int idx;

		snprintf(list, sizeof(list), "%s", t->certs);
		for (tok = strtok_r(list, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
			certs[n++] = cert_by_name(tok);
		if (t->sni) {
			snprintf(h.sni, sizeof(h.sni), "%s", t->sni);
			h.has_sni = true;
		}
		h.ecdsa_ok = t->ok & E;
		h.rsa_ok = t->ok & R;
		h.ecdsa_curves_bad = t->bad;
		idx = certstore_select_ex(certs, n, &h, &how);
		if ((t->want ? (idx < 0 || certs[idx] != cert_by_name(t->want)) : idx != -1) ||
		    how != t->how)
			fail_msg("case %zu [%s] sni=%s ok=%d: got %d (%s, %s), want %s (%s)", k,
				 t->certs, t->sni ? t->sni : "-", t->ok, idx,
				 idx >= 0 ? certstore_cert_path(certs[idx]) : "-",
				 certstore_match_name(how), t->want ? t->want : "-1",
				 certstore_match_name(t->how));
		assert_int_equal(certstore_select(certs, n, &h), idx);
	}
	{
		struct certstore_hello h = { .rsa_ok = true };

		assert_int_equal(certstore_select(NULL, 0, &h), -1);
	}
}

int main(void)
{
	const struct CMUnitTest load_tests[] = {
		cmocka_unit_test(test_load_rsa),    cmocka_unit_test(test_load_ecdsa),
		cmocka_unit_test(test_load_names),  cmocka_unit_test(test_load_expired),
		cmocka_unit_test(test_load_errors), cmocka_unit_test(test_domains),
		cmocka_unit_test(test_name_match),
	};
	const struct CMUnitTest select_tests[] = {
		cmocka_unit_test(test_select_table),
	};
	int fails;

	fx_init();
	fails = cmocka_run_group_tests_name("certstore load", load_tests, NULL, NULL);
	fails += cmocka_run_group_tests_name("certstore select", select_tests, load_all, free_all);
	return fails ? 1 : 0;
}
