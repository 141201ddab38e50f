/* Unit tests for the control protocol and the metrics endpoint without a running daemon: request
 * parsing and its errors, commands that need no worker, the HTTP answers, and label escaping. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl.h"
#include "metrics.h"
#include "reload.h"
#include "stats.h"
#include "version.h"

static struct config cfg = { .path = "ktlsd.json" };
static struct state st = { .cfg = &cfg };
static struct reload rl;

static int setup(void **state)
{
	memset(&rl, 0, sizeof(rl));
	pthread_mutex_init(&rl.lock, NULL);
	rl.path = "ktlsd.json";
	rl.st = &st;
	rl.started = rl.last_change = 1700000000;
	rl.caps.tier[CFG_DP_USERSPACE] = true;
	return 0;
}

static int teardown(void **state)
{
	pthread_mutex_destroy(&rl.lock);
	stats_exit();
	return 0;
}

/* The reply to line; fails unless its "error" contains want (NULL: expects no error). */
static json_t *request(const char *line, const char *want)
{
	json_t *r = ctl_request(&rl, line, strlen(line));
	const char *err = json_string_value(json_object_get(r, "error"));

	assert_non_null(r);
	if (!want) {
		if (err)
			fail_msg("%s → error %s", line, err);
		assert_true(json_is_true(json_object_get(r, "ok")));
	} else if (!err || !strstr(err, want)) {
		fail_msg("%s → %s, expected an error with \"%s\"", line, err ? err : "no error",
			 want);
	}
	return r;
}

static void test_bad_requests_get_errors(void **state)
{
	static const char *const cases[][2] = {
		{ "", "malformed request" },
		{ "nope", "malformed request" },
		{ "[]", "malformed request" },
		{ "{}", "malformed request" },
		{ "{\"cmd\": null}", "malformed request" },
		{ "{\"cmd\": \"a\", \"cmd\": \"b\"}", "malformed request" },
		{ "{\"cmd\": \"stats\"} trailing", "malformed request" },
		{ "{\"cmd\": \"rm -rf\"}", "unknown command \"rm -rf\"" },
		{ "{\"cmd\": \"version\", \"x\": 1}", "version: unknown field \"x\"" },
		{ "{\"cmd\": \"drain\"}", "drain: \"listener\" is required" },
		{ "{\"cmd\": \"drain\", \"listener\": \"\"}", "drain: \"listener\" is required" },
		{ "{\"cmd\": \"cert-del\", \"name\": []}", "cert-del: \"name\" must be a string" },
		{ "{\"cmd\": \"connections\", \"limit\": 0}", "limit must be an integer" },
		{ "{\"cmd\": \"connections\", \"limit\": 10001}", "limit must be an integer" },
		{ "{\"cmd\": \"connections\", \"limit\": 1.5}", "limit must be an integer" },
		{ "{\"cmd\": \"connections\", \"tier\": \"warp\"}", "unknown tier \"warp\"" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		json_decref(request(cases[i][0], cases[i][1]));
}

static void test_commands_without_workers(void **state)
{
	json_t *r = request("{\"cmd\": \"version\"}", NULL);

	assert_string_equal(json_string_value(json_object_get(r, "version")), KTLSD_VERSION);
	assert_string_equal(json_string_value(json_object_get(r, "config")), "ktlsd.json");
	assert_string_equal(json_string_value(json_object_get(r, "started")),
			    "2023-11-14T22:13:20Z");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r, "datapath"), "userspace")),
	    "available");
	json_decref(r);
	r = request("{\"cmd\": \"help\"}", NULL);
	assert_int_equal(json_array_size(json_object_get(r, "commands")), 10);
	json_decref(r);
	r = request("{\"cmd\": \"connections\", \"listener\": \"web\", \"limit\": 5}", NULL);
	assert_int_equal(json_integer_value(json_object_get(r, "total")), 0);
	json_decref(r);
	r = request("{\"cmd\": \"listeners\"}", NULL);
	assert_int_equal(json_array_size(json_object_get(r, "listeners")), 0);
	json_decref(r);
	json_decref(request("{\"cmd\": \"certs\", \"name\": \"x\"}", "no certificate named"));
}

static char *http(const char *req, bool complete)
{
	char *out = NULL;
	size_t len;

	assert_int_equal(metrics_http(&rl, req, strlen(req), complete, &out, &len), 0);
	out = realloc(out, len + 1);
	out[len] = '\0';
	return out;
}

static void test_http_answers(void **state)
{
	static const char *const cases[][2] = {
		{ "GET / HTTP/1.1\r\n\r\n", "HTTP/1.0 404 " },
		{ "POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.0 405 " },
		{ "GET /metrics\r\n\r\n", "HTTP/1.0 400 " },
		{ "GET /metrics SPDY/3\r\n\r\n", "HTTP/1.0 400 " },
		{ "\r\n\r\n", "HTTP/1.0 400 " },
		{ "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.0 200 OK\r\n" },
	};
	char *out;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		out = http(cases[i][0], true);
		if (strncmp(out, cases[i][1], strlen(cases[i][1])) != 0)
			fail_msg("%s → %.40s", cases[i][0], out);
		free(out);
	}
	out = http("GET /metrics HTTP/1.1\r\n", false);
	assert_memory_equal(out, "HTTP/1.0 400 ", 13);
	free(out);
	out = http("HEAD /metrics HTTP/1.0\r\n\r\n", true);
	assert_non_null(strstr(out, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(out, "\r\n\r\n"));
	assert_string_equal(strstr(out, "\r\n\r\n"), "\r\n\r\n"); /* no body */
	free(out);
}

static void test_exposition_escapes_labels_and_hides_unused(void **state)
{
	struct stats_listener *odd = stats_listener_get("a\"b\\c\nd");
	char *text;
	size_t len;

	stats_listener_get("built by a refused reload"); /* no traffic, not configured */
	assert_true(stats_conn_reserve(odd, 10));
	stats_conn_tier(odd, KTLSD_TIER_USERSPACE);
	stats_handshake(odd, STATS_HS_FAILED, 0, "no shared cipher");
	assert_int_equal(metrics_render(&rl, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "ktlsd_connections_active{listener=\"a\\\"b\\\\c\\nd\","
				     "tier=\"userspace\"} 1\n"));
	assert_non_null(strstr(text, "ktlsd_handshake_failures_total{listener=\"a\\\"b\\\\c\\nd\","
				     "reason=\"no shared cipher\"} 1\n"));
	assert_non_null(strstr(text, "# TYPE ktlsd_handshake_seconds histogram\n"));
	assert_non_null(strstr(text, "le=\"0.0025\"} 0\n"));
	assert_non_null(strstr(text, "ktlsd_reloads_total{result=\"failed\"} 0\n"));
	assert_null(strstr(text, "refused reload"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_requests_get_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commands_without_workers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exposition_escapes_labels_and_hides_unused,
						setup, teardown),
	};

	return cmocka_run_group_tests_name("ctl", tests, NULL, NULL);
}
