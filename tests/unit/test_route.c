/* Unit tests for route: which backend a tls-passthrough SNI goes to (docs/configuration.md,
 * "tls-passthrough listeners and routes"), and which route names the config accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "hostname.h"
#include "route.h"

static struct cfg_route routes[] = {
	{ .sni = "shop.example.com", .backend = 1 },
	{ .sni = "*.example.com", .backend = 2 },
	{ .sni = "*.api.example.com", .backend = 3 },
	{ .sni = "*.example.com", .backend = 4 }, /* same as routes[1]: config order wins */
	{ .sni = "Mixed.Example.ORG.", .backend = 5 },
};

static struct cfg_listener listener(bool with_default)
{
	struct cfg_listener l = { .routes = routes, .n_routes = 5 };

	if (with_default) {
		l.backend_name = "fallback";
		l.backend = 9;
	}
	return l;
}

static void expect(const struct cfg_listener *l, const char *sni, ssize_t backend,
		   enum route_match how)
{
	enum route_match got;
	ssize_t b = route_select(l, sni, &got);

	if (b != backend || got != how)
		fail_msg("%s: backend %zd (%s), expected %zd (%s)", sni ? sni : "(no SNI)", b,
			 route_match_name(got), backend, route_match_name(how));
}

static void test_select(void **state)
{
	struct cfg_listener l = listener(true);

	expect(&l, "shop.example.com", 1, ROUTE_EXACT); /* exact beats *.example.com */
	expect(&l, "cats.example.com", 2, ROUTE_WILDCARD);
	expect(&l, "v1.api.example.com", 3, ROUTE_WILDCARD); /* the longer suffix */
	expect(&l, "api.example.com", 2, ROUTE_WILDCARD);
	expect(&l, "a.v1.api.example.com", 9, ROUTE_DEFAULT); /* one label per "*" */
	expect(&l, "example.com", 9, ROUTE_DEFAULT);
	expect(&l, "mixed.example.org", 5, ROUTE_EXACT); /* case and trailing dot ignored */
	expect(&l, NULL, 9, ROUTE_NO_SNI);
	l = listener(false);
	expect(&l, "nobody.example.net", -1, ROUTE_NONE);
	expect(&l, NULL, -1, ROUTE_NONE);
	expect(&l, "cats.example.com", 2, ROUTE_WILDCARD);
}

static void test_check_pattern(void **state)
{
	static const char *const good[] = { "a.example.com", "*.example.com", "x", "a-b_c.d.",
					    "*.a.b" };
	static const char *const bad[] = {
		"",	 ".",	    "*.com",	    "*",   "w*.example.com", "a..b",
		"a.*.b", "a b.com", "*example.com", ".a.b"
	};
	char label[80];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (hostname_check_pattern(good[i]))
			fail_msg("%s refused: %s", good[i], hostname_check_pattern(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (!hostname_check_pattern(bad[i]))
			fail_msg("\"%s\" accepted", bad[i]);
	memset(label, 'a', 64);
	memcpy(label + 64, ".com", 5);
	assert_non_null(hostname_check_pattern(label)); /* a 64-character label */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_check_pattern),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
