/* Unit tests for config: defaults, every kind of error with its file and JSON path. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char dir[] = "/tmp/ktlsd-test-config-XXXXXX";
static char path[256];

#define MINIMAL_TAIL                                                                               \
	"\"certificates\": {\"c\": {\"cert\": \"c.pem\", \"key\": \"c.key\"}},"                    \
	"\"backends\": {\"app\": {\"servers\": [\"127.0.0.1:8080\"]}}"

static void write_config(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Loads text; expects failure and an error containing each of the NULL-terminated needles. */
static void expect_errors(const char *text, ...)
{
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;
	const char *needle;
	va_list ap;

	write_config(text);
	assert_true(config_load(path, &cfg, &errs) < 0);
	assert_null(cfg);
	assert_true(errs.n > 0);
	va_start(ap, text);
	while ((needle = va_arg(ap, const char *))) {
		bool found = false;

		for (size_t i = 0; i < errs.n; i++)
			found |= strstr(errs.msgs[i], needle) != NULL &&
				 strncmp(errs.msgs[i], path, strlen(path)) == 0;
		if (!found) {
			for (size_t i = 0; i < errs.n; i++)
				print_error("  got: %s\n", errs.msgs[i]);
			fail_msg("no error contains \"%s\"", needle);
		}
	}
	va_end(ap);
	config_errors_free(&errs);
}

static struct config *load_ok(const char *text)
{
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;

	write_config(text);
	if (config_load(path, &cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			print_error("  %s\n", errs.msgs[i]);
		fail_msg("config did not load");
	}
	return cfg;
}

static void test_minimal_config_gets_documented_defaults(void **state)
{
	struct config *cfg =
	    load_ok("{\"listeners\": [{\"bind\": \"127.0.0.1:8443\", "
		    "\"certificates\": [\"c\"], \"backend\": \"app\"}]," MINIMAL_TAIL "}");
	const struct cfg_listener *l = &cfg->listeners[0];

	assert_int_equal(cfg->n_listeners, 1);
	assert_string_equal(l->name, "127.0.0.1:8443");
	assert_int_equal(l->protocol, CFG_PROTO_TLS);
	assert_string_equal(l->security_policy, "ELBSecurityPolicy-TLS13-1-2-2021-06");
	assert_int_equal(l->datapath, CFG_DP_AUTO);
	assert_false(l->session_resumption);
	assert_null(l->session_tickets.key_file);
	assert_int_equal(l->session_tickets.rotate_s, 3600);
	assert_int_equal(l->session_tickets.lifetime_s, 7200);
	assert_false(l->backend_tls.enabled);
	assert_true(l->backend_tls.verify);
	assert_string_equal(l->backend_tls.security_policy, "ELBSecurityPolicy-2016-08");
	assert_int_equal(l->timeouts.handshake_ms, 10000);
	assert_int_equal(l->timeouts.idle_ms, 300000);
	assert_int_equal(l->timeouts.connect_ms, 3000);
	assert_int_equal(l->timeouts.client_hello_ms, 5000);
	assert_int_equal(l->timeouts.close_ms, 5000);
	assert_int_equal(l->max_connections, 100000);
	assert_int_equal(l->max_certificates, 15);
	assert_int_equal(l->client_auth.mode, CFG_CAUTH_NONE);
	assert_int_equal(cfg->workers, 0);
	assert_string_equal(cfg->control.socket, "/run/ktlsd/ctl.sock");
	assert_string_equal(cfg->bpf.pin_path, "/sys/fs/bpf/ktlsd");
	assert_false(cfg->metrics.enabled);
	assert_int_equal(cfg->limits.max_connections, 1000000);
	assert_int_equal(cfg->limits.max_handshakes, 10000);
	assert_int_equal(cfg->limits.per_source.rate, 0);
	assert_int_equal(cfg->limits.per_source.burst, 100);
	assert_int_equal(cfg->limits.per_source.max_handshakes, 32);
	assert_int_equal(cfg->limits.per_source.max_connections, 10000);
	assert_int_equal(cfg->limits.per_source.table_size, 65536);
	assert_int_equal(cfg->limits.sockmap_backlog, 512ull << 20);
	assert_null(cfg->user);
	assert_null(cfg->group);
	assert_int_equal(cfg->key_file_permissions, CFG_KEYPERM_REFUSE);
	/* relative paths resolve against the config file's directory */
	assert_string_equal(cfg->certs[0].cert, strcat(strcpy((char[300]){ 0 }, dir), "/c.pem"));
	config_put(cfg);
}

static void test_full_config_from_design(void **state)
{
	struct config *cfg = load_ok(
	    "{\"listeners\": [{\"name\": \"web\", \"bind\": \"[::1]:443\", \"protocol\": \"tls\","
	    "\"security_policy\": \"ELBSecurityPolicy-2016-08\", \"certificates\": [\"c\"],"
	    "\"client_auth\": {\"mode\": \"required\", \"ca\": \"partners\"},"
	    "\"alpn\": [\"h2\", \"http/1.1\"], \"backend\": \"app\","
	    "\"backend_tls\": {\"enabled\": true, \"verify\": true, \"ca_file\": \"/b.pem\","
	    "\"sni\": \"app.internal\"}, \"proxy_protocol\": \"v2\", \"datapath\": \"userspace\","
	    "\"session_resumption\": true, \"timeouts\": {\"handshake_ms\": 5000},"
	    "\"max_connections\": 10}],"
	    "\"ca_certificates\": {\"partners\": {\"file\": \"ca.pem\", \"crl\": \"ca.crl\"}},"
	    "\"workers\": 2, \"metrics\": {\"bind\": \"127.0.0.1:9310\"}," MINIMAL_TAIL "}");
	const struct cfg_listener *l = &cfg->listeners[0];

	assert_string_equal(l->name, "web");
	assert_int_equal(l->bind.ss.ss_family, AF_INET6);
	assert_int_equal(l->client_auth.mode, CFG_CAUTH_REQUIRED);
	assert_int_equal(l->client_auth.ca, 0);
	assert_int_equal(l->n_alpn, 2);
	assert_string_equal(l->alpn[1], "http/1.1");
	assert_true(l->backend_tls.enabled);
	assert_string_equal(l->backend_tls.sni, "app.internal");
	assert_int_equal(l->proxy_protocol, CFG_PROXY_V2);
	assert_int_equal(l->timeouts.handshake_ms, 5000);
	assert_int_equal(l->timeouts.idle_ms, 300000);
	assert_int_equal(cfg->workers, 2);
	assert_true(cfg->metrics.enabled);
	assert_non_null(config_listener_by_name(cfg, "web"));
	config_put(cfg);
}

static void test_malformed_json_has_line_and_column(void **state)
{
	expect_errors("{\n \"listeners\": [\n  {\"bind\": }\n ]\n}", ":3:", NULL);
}

static void test_duplicate_keys_rejected(void **state)
{
	expect_errors("{\"workers\": 1, \"workers\": 2, \"listeners\": []}", "duplicate", NULL);
}

static void test_unknown_fields_name_their_path(void **state)
{
	expect_errors("{\"listners\": [], \"listeners\": [{\"bind\": \"127.0.0.1:1\", "
		      "\"certificates\": [\"c\"], \"backend\": \"app\", \"timeouts\": "
		      "{\"idle\": 5}, \"bogus\": 1}]," MINIMAL_TAIL "}",
		      ": listners: unknown field", ": listeners[0].bogus: unknown field",
		      ": listeners[0].timeouts.idle: unknown field", NULL);
}

static void test_types_bounds_and_enums(void **state)
{
	expect_errors("{\"listeners\": [{\"bind\": \"127.0.0.1:1\", \"certificates\": [\"c\"], "
		      "\"backend\": \"app\", \"max_connections\": 0, \"protocol\": \"udp\", "
		      "\"session_resumption\": \"yes\", \"alpn\": [\"\"], "
		      "\"timeouts\": {\"connect_ms\": \"3s\"}}], \"workers\": -1," MINIMAL_TAIL "}",
		      "listeners[0].max_connections: must be an integer from 1 to 10000000",
		      "listeners[0].protocol: must be one of \"tls\", \"tcp\", \"tls-passthrough\"",
		      "listeners[0].session_resumption: must be true or false",
		      "listeners[0].alpn[0]: must be a non-empty string",
		      "listeners[0].timeouts.connect_ms: must be an integer",
		      ": workers: must be an integer from 0 to 1024", NULL);
}

static void test_tickets_and_backend_tls(void **state)
{
	struct config *cfg = load_ok(
	    "{\"listeners\": [{\"bind\": \"127.0.0.1:1\", \"certificates\": [\"c\"], "
	    "\"backend\": \"app\", \"session_resumption\": true, \"session_tickets\": "
	    "{\"key_file\": \"t.key\", \"rotate_s\": 60, \"lifetime_s\": 120}}]," MINIMAL_TAIL "}");

	assert_true(cfg->listeners[0].session_tickets.key_file[0] == '/'); /* resolved */
	assert_non_null(strstr(cfg->listeners[0].session_tickets.key_file, "/t.key"));
	assert_int_equal(cfg->listeners[0].session_tickets.rotate_s, 60);
	assert_int_equal(cfg->listeners[0].session_tickets.lifetime_s, 120);
	config_put(cfg);
	expect_errors("{\"listeners\": [{\"bind\": \"127.0.0.1:1\", \"certificates\": [\"c\"], "
		      "\"backend\": \"app\", \"session_tickets\": {\"key_file\": \"t.key\", "
		      "\"rotate_s\": 0, \"keys\": 2}}, {\"bind\": \"127.0.0.1:2\", \"protocol\": "
		      "\"tcp\", \"backend\": \"app\", \"backend_tls\": {\"enabled\": true, "
		      "\"verify\": false}}]," MINIMAL_TAIL "}",
		      "listeners[0].session_tickets.rotate_s: must be an integer from 1 to 604800",
		      "listeners[0].session_tickets.keys: unknown field", NULL);
	expect_errors("{\"listeners\": [{\"bind\": \"127.0.0.1:1\", \"certificates\": [\"c\"], "
		      "\"backend\": \"app\", \"session_tickets\": {\"key_file\": \"t.key\"}}, "
		      "{\"bind\": \"127.0.0.1:2\", \"protocol\": \"tcp\", \"backend\": \"app\", "
		      "\"backend_tls\": {\"enabled\": true, \"verify\": false}}]," MINIMAL_TAIL "}",
		      "listeners[0].session_tickets.key_file: needs \"session_resumption\": true",
		      "listeners[1].backend_tls.enabled: applies only to \"tls\" listeners", NULL);
}

static void test_addresses(void **state)
{
	expect_errors(
	    "{\"listeners\": [{\"bind\": \"::1:443\", \"certificates\": [\"c\"], "
	    "\"backend\": \"app\"}, {\"bind\": \"127.0.0.1:99999\", \"certificates\": "
	    "[\"c\"], \"backend\": \"app\"}, {\"bind\": \"noport\", \"certificates\": "
	    "[\"c\"], \"backend\": \"app\"}],"
	    "\"certificates\": {\"c\": {\"cert\": \"c.pem\", \"key\": \"c.key\"}},"
	    "\"backends\": {\"app\": {\"servers\": []}}}",
	    "listeners[0].bind: \"::1:443\": IPv6 addresses must be written \"[addr]:port\"",
	    "listeners[1].bind: \"127.0.0.1:99999\": port must be a number",
	    "listeners[2].bind: \"noport\": expected \"host:port\"",
	    "backends.app.servers: must be a non-empty array", NULL);
}

static void test_required_fields(void **state)
{
	expect_errors("{}", ": listeners: required field is missing", NULL);
	expect_errors("{\"listeners\": [{}]," MINIMAL_TAIL "}",
		      "listeners[0].bind: required field is missing", NULL);
	expect_errors("{\"listeners\": [{\"bind\": \"127.0.0.1:1\", \"certificates\": [\"c\"], "
		      "\"backend\": \"app\"}], \"certificates\": {\"c\": {\"cert\": \"c.pem\"}},"
		      "\"backends\": {\"app\": {\"servers\": [\"127.0.0.1:1\"]}}}",
		      "certificates.c.key: required field is missing", NULL);
}

static void test_cross_references(void **state)
{
	expect_errors(
	    "{\"listeners\": [{\"name\": \"a\", \"bind\": \"127.0.0.1:1\", "
	    "\"certificates\": [\"c\", \"nope\"], \"backend\": \"missing\", "
	    "\"client_auth\": {\"mode\": \"required\"}}, {\"name\": \"a\", \"bind\": "
	    "\"127.0.0.1:2\", \"backend\": \"app\"}, {\"name\": \"p\", \"bind\": "
	    "\"127.0.0.1:3\", \"protocol\": \"tcp\", \"backend\": \"app\", "
	    "\"datapath\": \"ktls-splice\"}]," MINIMAL_TAIL "}",
	    "listeners[0].certificates[1]: no certificate named \"nope\"",
	    "listeners[0].backend: no backend named \"missing\"",
	    "listeners[0].client_auth.ca: required when mode is not \"none\"",
	    "listeners[1]: name \"a\" is already used by listeners[0]",
	    "listeners[1]: a \"tls\" listener needs at least one entry in \"certificates\"",
	    "listeners[2].datapath: \"ktls-splice\" needs a \"tls\" listener", NULL);
}

/* Two listeners on one port would both bind (SO_REUSEPORT) and split its connections. */
static void test_overlapping_binds(void **state)
{
	expect_errors(
	    "{\"listeners\": [{\"name\": \"a\", \"bind\": \"127.0.0.1:8443\", "
	    "\"protocol\": \"tcp\", \"backend\": \"app\"}, {\"name\": \"b\", \"bind\": "
	    "\"127.0.0.1:8443\", \"protocol\": \"tcp\", \"backend\": \"app\"}, {\"name\": "
	    "\"c\", \"bind\": \"0.0.0.0:8443\", \"protocol\": \"tcp\", \"backend\": \"app\"}, "
	    "{\"name\": \"d\", \"bind\": \"127.0.0.2:8443\", \"protocol\": \"tcp\", "
	    "\"backend\": \"app\"}, {\"name\": \"e\", \"bind\": \"[::1]:8443\", "
	    "\"protocol\": \"tcp\", \"backend\": \"app\"}]," MINIMAL_TAIL "}",
	    "listeners[1].bind: 127.0.0.1:8443 takes the connections of listeners[0] "
	    "(127.0.0.1:8443): each listener needs its own port, or addresses that do not "
	    "overlap",
	    "listeners[2].bind: 0.0.0.0:8443 takes the connections of listeners[0] "
	    "(127.0.0.1:8443): each listener needs its own port, or addresses that do not "
	    "overlap",
	    "listeners[2].bind: 0.0.0.0:8443 takes the connections of listeners[1] "
	    "(127.0.0.1:8443): each listener needs its own port, or addresses that do not "
	    "overlap",
	    "listeners[3].bind: 127.0.0.2:8443 takes the connections of listeners[2] "
	    "(0.0.0.0:8443): each listener needs its own port, or addresses that do not "
	    "overlap",
	    NULL);
}

static void test_certificate_limit(void **state)
{
	expect_errors(
	    "{\"listeners\": [{\"bind\": \"127.0.0.1:1\", \"backend\": \"app\", "
	    "\"max_certificates\": 2, \"certificates\": [\"c\", \"c\", \"c\"]}]," MINIMAL_TAIL "}",
	    "listeners[0].certificates: 3 certificates exceed max_certificates (2)", NULL);
}

static void test_limits_and_privilege_fields(void **state)
{
	struct config *cfg;

#define L1                                                                                         \
	"{\"listeners\": [{\"bind\": \"127.0.0.1:8443\", \"certificates\": [\"c\"], "              \
	"\"backend\": \"app\"}]," MINIMAL_TAIL ","
	cfg = load_ok(L1
		      "\"limits\": {\"max_connections\": 5, \"max_handshakes\": 3, "
		      "\"per_source\": {\"rate\": 7, \"burst\": 9, \"max_handshakes\": 0, "
		      "\"table_size\": 64}, \"sockmap_backlog\": 8589934592}, \"user\": \"ktlsd\", "
		      "\"group\": \"ssl\", "
		      "\"key_file_permissions\": \"warn\"}");
	assert_int_equal(cfg->limits.max_connections, 5);
	assert_int_equal(cfg->limits.max_handshakes, 3);
	assert_int_equal(cfg->limits.per_source.rate, 7);
	assert_int_equal(cfg->limits.per_source.burst, 9);
	assert_int_equal(cfg->limits.per_source.max_handshakes, 0);
	assert_int_equal(cfg->limits.per_source.table_size, 64);
	assert_int_equal(cfg->limits.sockmap_backlog, 8ull << 30); /* past 32 bits */
	assert_string_equal(cfg->user, "ktlsd");
	assert_string_equal(cfg->group, "ssl");
	assert_int_equal(cfg->key_file_permissions, CFG_KEYPERM_WARN);
	config_put(cfg);
	expect_errors(L1
		      "\"limits\": {\"max_handshakes\": 0, \"per_source\": "
		      "{\"table_size\": 10, \"burst\": 0, \"x\": 1}, \"sockmap_backlog\": 4096}}",
		      "limits.max_handshakes: must be an integer from 1",
		      "limits.sockmap_backlog: must be an integer from 1048576 to 1099511627776",
		      "limits.per_source.table_size: must be an integer from 64",
		      "limits.per_source.burst: must be an integer from 1",
		      "limits.per_source.x: unknown field", NULL);
	expect_errors(L1 "\"group\": \"ssl\"}", "group: needs \"user\"", NULL);
	expect_errors(L1 "\"key_file_permissions\": \"ignore\"}",
		      "key_file_permissions: must be one of \"refuse\", \"warn\"", NULL);
#undef L1
}

static void test_missing_file_is_named(void **state)
{
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;

	assert_true(config_load("/nonexistent/ktlsd.json", &cfg, &errs) < 0);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msgs[0], "/nonexistent/ktlsd.json"));
	assert_non_null(strstr(errs.msgs[0], "No such file"));
	config_errors_free(&errs);
}

static void test_references_keep_snapshot_alive(void **state)
{
	struct config *cfg =
	    load_ok("{\"listeners\": [{\"bind\": \"127.0.0.1:8443\", "
		    "\"certificates\": [\"c\"], \"backend\": \"app\"}]," MINIMAL_TAIL "}");
	struct config *ref = config_get(cfg);

	config_put(cfg);
	assert_string_equal(ref->listeners[0].bind.text, "127.0.0.1:8443");
	config_put(ref);
	config_put(NULL);
}

/* Every section and kind of field: three listeners (tls with everything set, tcp, passthrough
 * with routes), named certificates, CAs, backends and a custom policy, the top-level sections. */
#define REALISTIC                                                                                  \
	"{\"listeners\": [{\"name\": \"web\", \"bind\": \"127.0.0.1:8443\", "                      \
	"\"security_policy\": \"mine\", \"certificates\": [\"c\", \"d\"], "                        \
	"\"client_auth\": {\"mode\": \"optional\", \"ca\": \"partners\", \"depth\": 3}, "          \
	"\"alpn\": [\"h2\", \"http/1.1\"], \"backend\": \"app\", "                                 \
	"\"backend_tls\": {\"enabled\": true, \"ca_file\": \"b.pem\", "                            \
	"\"sni\": \"app.internal\"}, \"proxy_protocol\": \"v2\", \"session_resumption\": true, "   \
	"\"session_tickets\": {\"key_file\": \"t.key\", \"rotate_s\": 600}, "                      \
	"\"timeouts\": {\"handshake_ms\": 5000}, \"max_connections\": 1000}, "                     \
	"{\"name\": \"plain\", \"bind\": \"[::1]:8080\", \"protocol\": \"tcp\", "                  \
	"\"backend\": \"app\", \"datapath\": \"sockmap\"}, "                                       \
	"{\"bind\": \"127.0.0.1:9443\", \"protocol\": \"tls-passthrough\", "                       \
	"\"backend\": \"api\", \"routes\": [{\"sni\": \"a.example.com\", \"backend\": \"app\"}, "  \
	"{\"sni\": \"*.example.org\", \"backend\": \"api\"}]}], "                                  \
	"\"certificates\": {\"c\": {\"cert\": \"c.pem\", \"key\": \"c.key\", "                     \
	"\"domains\": [\"www.example.com\", \"example.com\"]}, "                                   \
	"\"d\": {\"cert\": \"/etc/d.pem\", \"key\": \"/etc/d.pem\"}}, "                            \
	"\"ca_certificates\": {\"partners\": {\"file\": \"ca.pem\", \"crl\": \"ca.crl\"}}, "       \
	"\"backends\": {\"app\": {\"servers\": [\"127.0.0.1:8080\", \"127.0.0.1:8081\"], "         \
	"\"balance\": \"first\"}, \"api\": {\"servers\": [\"[::1]:9000\"]}}, "                     \
	"\"security_policies\": {\"mine\": {\"versions\": [\"TLSv1.2\", \"TLSv1.3\"], "            \
	"\"ciphers\": [\"ECDHE-ECDSA-AES128-GCM-SHA256\"], "                                       \
	"\"ciphersuites\": [\"TLS_AES_128_GCM_SHA256\"], \"groups\": [\"X25519\", \"P-256\"]}}, "  \
	"\"workers\": 2, \"control\": {\"socket\": \"ctl.sock\"}, "                                \
	"\"metrics\": {\"bind\": \"127.0.0.1:9310\"}, \"bpf\": {\"pin_path\": \"/k\"}, "           \
	"\"limits\": {\"per_source\": {\"rate\": 100}}, \"user\": \"nobody\", "                    \
	"\"group\": \"nogroup\", \"key_file_permissions\": \"warn\"}"

/* A reload must never kill the daemon: allocation failure anywhere in config_load (SIGHUP,
 * ktlsctl reload, cert-set/cert-del all end there) is a config error naming the file, and the
 * caller keeps its config. Fails the first allocation, then the second, ... until the load
 * makes fewer allocations than that and succeeds. ASan (make check) sees a leak on any of these
 * error paths. */
static void test_allocation_failure_is_a_config_error(void **state)
{
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;
	int n, ret = -1;

	write_config(REALISTIC);
	for (n = 0; n < 10000; n++) {
		config_alloc_fail_after = n;
		ret = config_load(path, &cfg, &errs);
		if (config_alloc_fail_after >= 0)
			break; /* there was no allocation number n */
		if (ret != -ENOMEM || cfg || errs.n != 1 ||
		    strncmp(errs.msgs[0], path, strlen(path)) != 0 ||
		    !strstr(errs.msgs[0], ": out of memory"))
			fail_msg("allocation %d failed: ret %d, cfg %p, %zu errors, first: %s", n,
				 ret, (void *)cfg, errs.n, errs.n ? errs.msgs[0] : "-");
		config_errors_free(&errs);
	}
	config_alloc_fail_after = -1;
	assert_int_equal(ret, 0);
	assert_int_equal(errs.n, 0);
	assert_true(n > 50); /* the loop went through the file's allocations */
	assert_int_equal(cfg->n_listeners, 3);
	assert_string_equal(cfg->listeners[2].routes[1].sni, "*.example.org");
	assert_int_equal(cfg->listeners[2].routes[1].backend, 1);
	assert_string_equal(cfg->policies[0].groups[1], "P-256");
	config_put(cfg);
}

/* The same over a file with problems, where the failing allocation may also be one of an error
 * message: the load is refused every time, never a snapshot with the problem unreported. */
static void test_allocation_failure_never_hides_a_problem(void **state)
{
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;
	int n, ret = 0;

	write_config("{\"listeners\": [{\"bind\": \"127.0.0.1:1\", \"certificates\": [\"c\"], "
		     "\"backend\": \"nope\"}, {\"bind\": \"127.0.0.1:2\", \"protocol\": \"tcp\", "
		     "\"backend\": \"app\", \"certificates\": [\"c\"]}]," MINIMAL_TAIL "}");
	for (n = 0; n < 10000; n++) {
		config_alloc_fail_after = n;
		ret = config_load(path, &cfg, &errs);
		if (config_alloc_fail_after >= 0)
			break;
		if (ret >= 0 || cfg)
			fail_msg("allocation %d failed: the file loaded", n);
		for (size_t i = 0; i < errs.n; i++)
			assert_true(strncmp(errs.msgs[i], path, strlen(path)) == 0);
		config_errors_free(&errs);
	}
	config_alloc_fail_after = -1;
	assert_int_equal(ret, -EINVAL);
	assert_null(cfg);
	assert_int_equal(errs.n, 2);
	assert_non_null(strstr(errs.msgs[0], "listeners[0].backend: no backend named \"nope\""));
	assert_non_null(strstr(errs.msgs[1], "listeners[1].certificates: applies only to \"tls\""));
	config_errors_free(&errs);
}

static int setup(void **state)
{
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/ktlsd.json", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	rmdir(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_config_gets_documented_defaults),
		cmocka_unit_test(test_full_config_from_design),
		cmocka_unit_test(test_malformed_json_has_line_and_column),
		cmocka_unit_test(test_duplicate_keys_rejected),
		cmocka_unit_test(test_unknown_fields_name_their_path),
		cmocka_unit_test(test_types_bounds_and_enums),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_tickets_and_backend_tls),
		cmocka_unit_test(test_required_fields),
		cmocka_unit_test(test_cross_references),
		cmocka_unit_test(test_overlapping_binds),
		cmocka_unit_test(test_certificate_limit),
		cmocka_unit_test(test_limits_and_privilege_fields),
		cmocka_unit_test(test_missing_file_is_named),
		cmocka_unit_test(test_references_keep_snapshot_alive),
		cmocka_unit_test(test_allocation_failure_is_a_config_error),
		cmocka_unit_test(test_allocation_failure_never_hides_a_problem),
	};

	return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
