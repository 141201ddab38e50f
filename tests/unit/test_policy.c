/* Unit tests for policy: the seven policies of the cipher table in AWS's Network Load Balancer
 * guide (docs/configuration.md, "Security policies"), checked against the table itself
 * (transcribed here from the guide's create-tls-listener page, independent of
 * data/elb-policies.json, whose source_notes name the page), the TLS 1.3 policies, custom
 * policies, and what OpenSSL makes of them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

/* Rows of that table; columns 2016-08, FS-2018-06, TLS-1-2, TLS-1-2-Ext, TLS-1-1, TLS-1-0.
 * 2015-05 is identical to 2016-08 (the table's footnote). */
static const char *const policies[] = {
	"ELBSecurityPolicy-2016-08",	     "ELBSecurityPolicy-FS-2018-06",
	"ELBSecurityPolicy-TLS-1-2-2017-01", "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
	"ELBSecurityPolicy-TLS-1-1-2017-01", "ELBSecurityPolicy-TLS-1-0-2015-04",
};
static const struct {
	const char *name;
	const char *marks; /* one char per column: x = ♦ */
} rows[] = {
	{ "TLSv1", "xx...x" },
	{ "TLSv1.1", "xx..xx" },
	{ "TLSv1.2", "xxxxxx" },
	{ "ECDHE-ECDSA-AES128-GCM-SHA256", "xxxxxx" },
	{ "ECDHE-RSA-AES128-GCM-SHA256", "xxxxxx" },
	{ "ECDHE-ECDSA-AES128-SHA256", "xxxxxx" },
	{ "ECDHE-RSA-AES128-SHA256", "xxxxxx" },
	{ "ECDHE-ECDSA-AES128-SHA", "xx.xxx" },
	{ "ECDHE-RSA-AES128-SHA", "xx.xxx" },
	{ "ECDHE-ECDSA-AES256-GCM-SHA384", "xxxxxx" },
	{ "ECDHE-RSA-AES256-GCM-SHA384", "xxxxxx" },
	{ "ECDHE-ECDSA-AES256-SHA384", "xxxxxx" },
	{ "ECDHE-RSA-AES256-SHA384", "xxxxxx" },
	{ "ECDHE-RSA-AES256-SHA", "xx.xxx" },
	{ "ECDHE-ECDSA-AES256-SHA", "xx.xxx" },
	{ "AES128-GCM-SHA256", "x.xxxx" },
	{ "AES128-SHA256", "x.xxxx" },
	{ "AES128-SHA", "x..xxx" },
	{ "AES256-GCM-SHA384", "x.xxxx" },
	{ "AES256-SHA256", "x.xxxx" },
	{ "AES256-SHA", "x..xxx" },
	{ "DES-CBC3-SHA", ".....x" },
};

static bool in_list(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list; (p = strstr(p, item)); p += n)
		if ((p == list || p[-1] == ':') && (p[n] == ':' || p[n] == '\0'))
			return true;
	return false;
}

static int version_of(const char *name)
{
	return strcmp(name, "TLSv1") == 0     ? TLS1_VERSION
	       : strcmp(name, "TLSv1.1") == 0 ? TLS1_1_VERSION
					      : TLS1_2_VERSION;
}

static void check_column(const char *name, size_t col)
{
	struct policy *p = NULL;
	char err[256];
	int min = 0;

	assert_int_equal(policy_lookup(NULL, name, &p, err, sizeof(err)), 0);
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		bool marked = rows[r].marks[col] == 'x';

		if (strncmp(rows[r].name, "TLSv", 4) == 0) {
			if (marked && !min)
				min = version_of(rows[r].name);
			continue;
		}
		if (strcmp(rows[r].name, "DES-CBC3-SHA") == 0 && marked) {
			/* Debian's OpenSSL has no 3DES: reported, never faked. */
			assert_int_equal(p->n_unavailable, 1);
			assert_string_equal(p->unavailable[0], "DES-CBC3-SHA");
			assert_false(in_list(p->ciphers, rows[r].name));
			continue;
		}
		if (marked != in_list(p->ciphers, rows[r].name))
			fail_msg("%s: %s should%s be in \"%s\"", name, rows[r].name,
				 marked ? "" : " not", p->ciphers);
	}
	assert_int_equal(p->min_version, min);
	assert_int_equal(p->max_version, TLS1_2_VERSION);
	assert_int_equal(p->weak, min < TLS1_2_VERSION);
	assert_string_equal(p->ciphersuites, "");
	policy_free(p);
}

static void test_seed_table_policies_exactly(void **state)
{
	for (size_t c = 0; c < sizeof(policies) / sizeof(policies[0]); c++)
		check_column(policies[c], c);
	check_column("ELBSecurityPolicy-2015-05", 0);
}

static void test_server_order_is_table_order(void **state)
{
	struct policy *p = NULL;
	char err[256];

	assert_int_equal(policy_lookup(NULL, "ELBSecurityPolicy-2016-08", &p, err, sizeof(err)), 0);
	assert_true(strncmp(p->ciphers,
			    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:", 58) == 0);
	policy_free(p);
}

static void test_tls13_policies(void **state)
{
	struct policy *p = NULL;
	char err[256];

	assert_int_equal(
	    policy_lookup(NULL, "ELBSecurityPolicy-TLS13-1-2-2021-06", &p, err, sizeof(err)), 0);
	assert_int_equal(p->min_version, TLS1_2_VERSION);
	assert_int_equal(p->max_version, TLS1_3_VERSION);
	assert_true(in_list(p->ciphersuites, "TLS_AES_128_GCM_SHA256"));
	assert_true(in_list(p->ciphersuites, "TLS_CHACHA20_POLY1305_SHA256"));
	assert_false(in_list(p->ciphers, "AES128-SHA"));
	policy_free(p);
	assert_int_equal(
	    policy_lookup(NULL, "ELBSecurityPolicy-TLS13-1-3-2021-06", &p, err, sizeof(err)), 0);
	assert_int_equal(p->min_version, TLS1_3_VERSION);
	assert_string_equal(p->ciphers, "");
	policy_free(p);
}

static void apply_one(const char *name, void *arg)
{
	unsigned *count = arg;
	struct policy *p = NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char err[256];

	assert_int_equal(policy_lookup(NULL, name, &p, err, sizeof(err)), 0);
	if (policy_apply(ctx, p, err, sizeof(err)) != 0)
		fail_msg("%s: %s", name, err);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE);
	assert_int_equal(SSL_CTX_get_security_level(ctx), p->weak ? 0 : 1);
	SSL_CTX_free(ctx);
	policy_free(p);
	(*count)++;
}

static void test_every_builtin_applies_to_openssl(void **state)
{
	unsigned count = 0;

	policy_foreach_builtin(apply_one, &count);
	assert_true(count >= 18); /* 18 policies and one alias in the table */
}

static void test_unknown_and_custom(void **state)
{
	char *vers[] = { "TLSv1.2" }, *ciphers[] = { "ECDHE-ECDSA-AES256-GCM-SHA384" };
	char *bad[] = { "SSLv3" };
	struct cfg_policy custom[] = {
		{ .name = "mine",
		  .versions = vers,
		  .n_versions = 1,
		  .ciphers = ciphers,
		  .n_ciphers = 1 },
		{ .name = "old", .versions = bad, .n_versions = 1 },
	};
	struct config cfg = { .policies = custom, .n_policies = 2 };
	struct policy *p = NULL;
	char err[256];

	assert_int_equal(policy_lookup(NULL, "ELBSecurityPolicy-Nope", &p, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "unknown security policy \"ELBSecurityPolicy-Nope\""));
	assert_int_equal(policy_lookup(&cfg, "mine", &p, err, sizeof(err)), 0);
	assert_string_equal(p->ciphers, "ECDHE-ECDSA-AES256-GCM-SHA384");
	assert_int_equal(p->min_version, TLS1_2_VERSION);
	policy_free(p);
	assert_int_equal(policy_lookup(&cfg, "old", &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown protocol version \"SSLv3\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_table_policies_exactly),
		cmocka_unit_test(test_server_order_is_table_order),
		cmocka_unit_test(test_tls13_policies),
		cmocka_unit_test(test_every_builtin_applies_to_openssl),
		cmocka_unit_test(test_unknown_and_custom),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
