/* test_conn — a connection's states and its tiers, driven through the I/O seam (conn_io.h) by
 * conn_testutil.h: real loopback sockets, a real TLS client, the daemon's state built from a
 * config, and every completion delivered by the test, so timeouts, cancels and errors happen when
 * the test says. Each test leaves no connection behind and no transition outside conn.c's table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn_testutil.h"
#include "datapath.h"
#include "dp_splice.h"
#include "dp_userspace.h"
#include "ktls.h"
#include <linux/tls.h>
#include <netinet/tcp.h>
#include "bpfmap.h"
#include "ring.h"
#include "stats.h"
#include "stats_conn.h"

enum { L_PLAIN, L_WEB, L_PT, L_DEAD, L_TWO, L_SM, L_KT, L_BT, L_CBC, L_N };

static struct state *st;
static int flfd, blfd; /* front (clients connect here) and backend listeners */
static struct sockaddr_in faddr, baddr;
static SSL_CTX *cctx, *bsctx; /* the test's TLS client, and its TLS backend */
static struct datapath_caps probed;

static void write_all(int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* Reads what fd has within a second (at most len bytes); 0 at EOF, -1 when nothing came. */
static ssize_t read_some(int fd, void *p, size_t len)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	for (int i = 0; i < 100; i++) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);

		if (n >= 0)
			return n;
		if (errno != EAGAIN)
			return -1;
		run();
		poll(&pfd, 1, 10);
	}
	return -1;
}

static void expect_bytes(int fd, const char *want)
{
	char buf[256];
	size_t got = 0, n = strlen(want);

	while (got < n) {
		ssize_t r = read_some(fd, buf + got, n - got);

		assert_true(r > 0);
		got += (size_t)r;
	}
	assert_memory_equal(buf, want, n);
}

static void expect_eof(int fd)
{
	char b;

	assert_int_equal(read_some(fd, &b, 1), 0);
}

/* Runs the queue until cond holds, letting the kernel move bytes in between (a second at most). */
#define RUN_UNTIL(cond)                                                                            \
	do {                                                                                       \
		for (int i_ = 0; i_ < 200 && !(cond); i_++) {                                      \
			run();                                                                     \
			usleep(5000);                                                              \
		}                                                                                  \
		assert_true(cond);                                                                 \
	} while (0)

static struct conn *open_conn(size_t li, int *client)
{
	int fd = tcp_pair(flfd, &faddr, client);
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	struct admit_hold hold = { 0 };

	assert_int_equal(getpeername(fd, (struct sockaddr *)&peer, &pl), 0);
	atomic_fetch_add(&st->listeners[li].conns, 1);
	assert_int_equal(conn_accept(&env, st, &st->listeners[li], fd, &peer, &hold), 0);
	return env.conns; /* the newest is first */
}

/* The backend's end of the connection c just made to the backend listener. */
static int backend_end(void)
{
	struct pollfd p = { .fd = blfd, .events = POLLIN };
	int fd;

	assert_int_equal(poll(&p, 1, 1000), 1);
	fd = accept4(blfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static int group_setup(void **state)
{
	char json[4096], dead[64];
	const char *fx = getenv("KTLSD_FIXTURES");
	struct sockaddr_in d;
	int dfd;

	assert_non_null(fx);
	flfd = listen_any(&faddr);
	blfd = listen_any(&baddr);
	dfd = listen_any(&d); /* a port nothing listens on once closed */
	close(dfd);
	snprintf(dead, sizeof(dead), "127.0.0.1:%u", ntohs(d.sin_port));
	snprintf(json, sizeof(json),
		 "{\"listeners\": ["
		 "{\"name\": \"plain\", \"bind\": \"127.0.0.1:1\", \"protocol\": \"tcp\", "
		 "\"backend\": \"app\", \"datapath\": \"userspace\", \"proxy_protocol\": \"v2\"},"
		 "{\"name\": \"web\", \"bind\": \"127.0.0.1:2\", \"certificates\": [\"ec\"], "
		 "\"backend\": \"app\", \"datapath\": \"userspace\", "
		 "\"timeouts\": {\"client_hello_ms\": 1000, \"handshake_ms\": 2000, "
		 "\"close_ms\": 500, \"idle_ms\": 5000}},"
		 "{\"name\": \"pt\", \"bind\": \"127.0.0.1:3\", \"protocol\": \"tls-passthrough\", "
		 "\"backend\": \"app\"},"
		 "{\"name\": \"dead\", \"bind\": \"127.0.0.1:4\", \"protocol\": \"tcp\", "
		 "\"backend\": \"dead\"},"
		 "{\"name\": \"two\", \"bind\": \"127.0.0.1:5\", \"protocol\": \"tcp\", "
		 "\"backend\": \"two\", \"datapath\": \"userspace\"},"
		 "{\"name\": \"sm\", \"bind\": \"127.0.0.1:6\", \"protocol\": \"tcp\", "
		 "\"backend\": \"app\"},"
		 "{\"name\": \"kt\", \"bind\": \"127.0.0.1:7\", \"certificates\": [\"ec\"], "
		 "\"backend\": \"app\"},"
		 "{\"name\": \"bt\", \"bind\": \"127.0.0.1:8\", \"certificates\": [\"ec\"], "
		 "\"backend\": \"app\", \"backend_tls\": {\"enabled\": true, \"verify\": false}, "
		 "\"timeouts\": {\"connect_ms\": 1000}},"
		 "{\"name\": \"cbc\", \"bind\": \"127.0.0.1:9\", \"certificates\": [\"ec\"], "
		 "\"backend\": \"app\", \"security_policy\": \"ELBSecurityPolicy-2016-08\"}],"
		 "\"certificates\": {\"ec\": {\"cert\": \"%s/server-ec.chain.pem\", "
		 "\"key\": \"%s/server-ec.key\"}},"
		 "\"backends\": {\"app\": {\"servers\": [\"127.0.0.1:%u\"]}, "
		 "\"dead\": {\"servers\": [\"%s\"]}, "
		 "\"two\": {\"servers\": [\"%s\", \"127.0.0.1:%u\"], \"balance\": \"first\"}}}",
		 fx, fx, ntohs(baddr.sin_port), dead, dead, ntohs(baddr.sin_port));
	st = state_from(json);
	cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(cctx);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	bsctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(bsctx);
	snprintf(json, sizeof(json), "%s/backend-server.chain.pem", fx);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(bsctx, json), 1);
	snprintf(json, sizeof(json), "%s/backend-server.key", fx);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(bsctx, json, SSL_FILETYPE_PEM), 1);
	datapath_probe(&probed); /* the BPF programs, for the sockmap tests */
	return 0;
}

static int group_teardown(void **state)
{
	SSL_CTX_free(cctx);
	SSL_CTX_free(bsctx);
	state_put(st);
	close(flfd);
	close(blfd);
	return 0;
}

static int setup(void **state)
{
	struct datapath_caps none = { .tier = { [CFG_DP_AUTO] = true, [CFG_DP_USERSPACE] = true } };

	datapath_set_caps(&none);
	env.now_ms = 1000000;
	conn_bad_transitions = 0;
	return 0;
}

static int teardown(void **state)
{
	unsigned left;

	run();
	left = env.n_conns;
	/* A failed test leaves its connection: closed here, so the next test starts clean. */
	for (int i = 0; i < 100 && env.conns; i++) {
		conn_abort(env.conns, CONN_END_SHUTDOWN);
		run();
	}
	fire_timers();
	assert_int_equal(left, 0);
	assert_int_equal(fq_n, 0);
	assert_int_equal(conn_bad_transitions, 0);
	ktls_set_ops(NULL);
	return 0;
}

/* ---- tcp, userspace ---- */

/* A tcp connection forwards both ways; the client's FIN reaches the backend while the backend
 * can still answer, and the backend's close ends the connection. The PROXY v2 header goes first. */
static void test_tcp_half_close_client_first(void **state)
{
	static const char v2sig[] = "\r\n\r\n\0\r\nQUIT\n";
	char hdr[16];
	int cl, be;
	struct conn *c = open_conn(L_PLAIN, &cl);

	assert_int_equal(c->state, CONN_CONNECTING);
	run();
	be = backend_end();
	assert_int_equal(c->state, CONN_FORWARDING);
	assert_ptr_equal(c->dp, &dp_userspace);
	assert_int_equal(read_some(be, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	assert_memory_equal(hdr, v2sig, 12);
	{
		char rest[64];
		uint16_t len = (uint16_t)((uint8_t)hdr[14] << 8 | (uint8_t)hdr[15]);

		assert_int_equal(read_some(be, rest, len), len);
	}
	write_all(cl, "ping", 4);
	expect_bytes(be, "ping");
	write_all(be, "pong", 4);
	expect_bytes(cl, "pong");
	shutdown(cl, SHUT_WR);
	expect_eof(be);
	assert_int_equal(env.n_conns, 1); /* half-closed: the backend may still answer */
	write_all(be, "late", 4);
	expect_bytes(cl, "late");
	close(be);
	expect_eof(cl);
	RUN_UNTIL(env.n_conns == 0);
	close(cl);
}

static void test_tcp_half_close_backend_first(void **state)
{
	int cl, be;
	struct conn *c = open_conn(L_TWO, &cl); /* first server refuses: the second takes it */

	run();
	be = backend_end();
	assert_int_equal(c->state, CONN_FORWARDING);
	assert_int_equal(c->attempt, 2);
	shutdown(be, SHUT_WR);
	expect_eof(cl);
	write_all(cl, "after", 5);
	expect_bytes(be, "after");
	close(cl);
	expect_eof(be);
	RUN_UNTIL(env.n_conns == 0);
	close(be);
}

static void test_backend_unreachable(void **state)
{
	struct stats_listener *sl = st->listeners[L_DEAD].stats;
	uint64_t before = atomic_load(&sl->backend_failures);
	int cl;

	open_conn(L_DEAD, &cl);
	run();
	assert_int_equal(env.n_conns, 0);
	assert_int_equal(atomic_load(&sl->backend_failures), before + 1);
	expect_eof(cl);
	close(cl);
}

/* The connect's deadline passes: the next server is tried; with none left the client is closed. */
static void test_connect_timeout_tries_the_next_server(void **state)
{
	int cl, be, i;
	struct conn *c = open_conn(L_TWO, &cl);

	i = fq_find(c, OP_CONNECT);
	assert_true(i >= 0);
	fq_complete((unsigned)i, -ECANCELED); /* what io_uring reports when the timer fired */
	assert_int_equal(c->state, CONN_CONNECTING);
	i = fq_find(c, OP_LINKTO);
	fq_complete((unsigned)i, -ETIME);
	assert_int_equal(c->attempt, 2); /* on to the second server */
	run();
	be = backend_end();
	assert_int_equal(c->state, CONN_FORWARDING);
	conn_abort(c, CONN_END_DRAIN_DEADLINE); /* what a drain at SIGTERM does at its deadline */
	assert_int_equal(c->state, CONN_CLOSING);
	assert_int_equal(env.n_conns, 1); /* freed only once its receives come back */
	run();
	assert_int_equal(env.n_conns, 0);
	expect_eof(be);
	close(be);
	close(cl);
}

/* An idle connection gives its buffers back and waits with polls; the next byte wakes it. */
static void test_park_and_unpark(void **state)
{
	int cl, be;
	struct conn *c = open_conn(L_PLAIN, &cl);
	char hdr[64];

	run();
	be = backend_end();
	assert_true(read_some(be, hdr, sizeof(hdr)) > 0); /* the PROXY header */
	write_all(cl, "x", 1);
	expect_bytes(be, "x");
	conn_check_timeout(c, env.now_ms + 999);
	assert_false(c->flags & CF_PARKED);
	conn_check_timeout(c, env.now_ms + 1000);
	assert_true(c->flags & CF_PARKED);
	run(); /* the cancelled receives come back; polls replace them */
	assert_null(c->cin.data);
	assert_null(c->bin.data);
	assert_true(c->flags & CF_CPOLL);
	dp_userspace_tick_done();
	dp_userspace_tick_done();
	write_all(cl, "wake", 4);
	expect_bytes(be, "wake");
	assert_false(c->flags & CF_PARKED);
	write_all(be, "back", 4);
	expect_bytes(cl, "back");
	conn_check_timeout(c, env.now_ms + 5000000);
	assert_int_equal(c->state, CONN_CLOSING); /* idle timeout */
	run();
	expect_eof(cl);
	close(cl);
	close(be);
}

static void test_client_reset_while_forwarding(void **state)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int cl, be;
	struct conn *c = open_conn(L_TWO, &cl);

	run();
	be = backend_end();
	assert_int_equal(c->state, CONN_FORWARDING);
	setsockopt(cl, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(cl);
	RUN_UNTIL(env.n_conns == 0);
	close(be);
}

/* ---- tls ---- */

static SSL *tls_client(int fd)
{
	SSL *s = SSL_new(cctx);

	assert_non_null(s);
	set_nonblock(fd);
	SSL_set_fd(s, fd);
	SSL_set_tlsext_host_name(s, "localhost");
	SSL_set_connect_state(s);
	return s;
}

/* A TLS peer's handshake (client or server), with the connection's completions in between. */
static void peer_handshake(SSL *s)
{
	for (int i = 0; i < 400 && SSL_do_handshake(s) != 1; i++) {
		run();
		usleep(1000);
	}
}

/* The client's handshake; then the backend. */
static int tls_handshake(SSL *s, struct conn *c)
{
	peer_handshake(s);
	assert_true(SSL_is_init_finished(s));
	RUN_UNTIL(c->state == CONN_FORWARDING);
	return backend_end();
}

static void tls_expect(SSL *s, const char *want)
{
	char buf[64];
	int n = -1;

	for (int i = 0; i < 400 && n <= 0; i++) {
		n = SSL_read(s, buf, sizeof(buf));
		if (n <= 0) {
			run();
			usleep(1000);
		}
	}
	assert_int_equal(n, (int)strlen(want));
	assert_memory_equal(buf, want, strlen(want));
}

/* A TLS connection on ktlsd's record layer: data both ways, the client's close_notify becomes
 * the backend's FIN, the backend's FIN becomes close_notify, and the connection ends. */
static void test_tls_userspace_round_trip(void **state)
{
	int cl, be, n = 0;
	struct conn *c = open_conn(L_WEB, &cl);
	SSL *s = tls_client(cl);
	char b;

	assert_int_equal(c->state, CONN_HANDSHAKE);
	be = tls_handshake(s, c);
	assert_ptr_equal(c->dp, &dp_userspace);
	assert_null(c->tls.ssl); /* the record layer took over */
	assert_int_equal(SSL_write(s, "ping", 4), 4);
	expect_bytes(be, "ping");
	write_all(be, "pong", 4);
	tls_expect(s, "pong");
	SSL_shutdown(s);
	expect_eof(be);
	close(be);
	for (int i = 0; i < 400 && (n = SSL_read(s, &b, 1)) > 0; i++)
		;
	RUN_UNTIL(SSL_read(s, &b, 1) <= 0 && SSL_get_error(s, 0) != SSL_ERROR_WANT_READ &&
		  env.n_conns == 0);
	assert_true(SSL_get_shutdown(s) & SSL_RECEIVED_SHUTDOWN);
	SSL_free(s);
	close(cl);
}

/* A handshake record that is no ClientHello: OpenSSL's alert goes out (FLUSH), then the
 * connection closes. */
static void test_tls_garbage_gets_an_alert(void **state)
{
	static const char junk[] = "\x16\x03\x01\x00\x05hello";
	struct stats_listener *sl = st->listeners[L_WEB].stats;
	uint64_t failed = atomic_load(&sl->handshakes[STATS_HS_FAILED]);
	unsigned char rec[7];
	int cl;

	open_conn(L_WEB, &cl);
	write_all(cl, junk, sizeof(junk) - 1);
	assert_int_equal(read_some(cl, rec, sizeof(rec)), (ssize_t)sizeof(rec));
	assert_int_equal(rec[0], 21); /* an alert record */
	assert_int_equal(rec[5], 2);  /* fatal */
	expect_eof(cl);
	RUN_UNTIL(env.n_conns == 0);
	assert_int_equal(atomic_load(&sl->handshakes[STATS_HS_FAILED]), failed + 1);
	close(cl);
}

/* A client that never sends its ClientHello is closed at client_hello_ms. */
static void test_client_hello_timeout(void **state)
{
	struct stats_listener *sl = st->listeners[L_WEB].stats;
	uint64_t timeouts = atomic_load(&sl->handshakes[STATS_HS_TIMEOUT]);
	int cl;
	struct conn *c = open_conn(L_WEB, &cl);

	conn_check_timeout(c, env.now_ms + 999);
	assert_int_equal(c->state, CONN_HANDSHAKE);
	conn_check_timeout(c, env.now_ms + 1000);
	assert_int_equal(c->state, CONN_CLOSING);
	run();
	assert_int_equal(env.n_conns, 0);
	assert_int_equal(atomic_load(&sl->handshakes[STATS_HS_TIMEOUT]), timeouts + 1);
	expect_eof(cl);
	close(cl);
}

/* The whole ClientHello came, the rest did not: handshake_ms. */
static void test_handshake_timeout(void **state)
{
	int cl;
	struct conn *c = open_conn(L_WEB, &cl);
	SSL *s = tls_client(cl);

	SSL_do_handshake(s); /* the ClientHello only */
	RUN_UNTIL(c->flags & CF_HELLO);
	conn_check_timeout(c, env.now_ms + 1500);
	assert_int_equal(c->state, CONN_HANDSHAKE);
	conn_check_timeout(c, env.now_ms + 2000);
	assert_int_equal(c->state, CONN_CLOSING);
	run();
	SSL_free(s);
	close(cl);
}

/* A client that reads none of the alert it is owed is closed at close_ms. */
static void test_flush_close_timeout(void **state)
{
	static const char junk[] = "\x16\x03\x01\x00\x05hello";
	int cl, i;
	struct conn *c = open_conn(L_WEB, &cl);

	write_all(cl, junk, sizeof(junk) - 1);
	i = fq_find(c, OP_CRECV);
	assert_true(i >= 0);
	assert_true(fq_try((unsigned)i)); /* the handshake fails; the alert waits to be sent */
	assert_int_equal(c->state, CONN_FLUSH);
	assert_true(fq_find(c, OP_CSEND) >= 0);
	conn_check_timeout(c, env.now_ms);
	conn_check_timeout(c, env.now_ms + 499);
	assert_int_equal(c->state, CONN_FLUSH);
	conn_check_timeout(c, env.now_ms + 500);
	assert_int_equal(c->state, CONN_CLOSING);
	run();
	close(cl);
}

/* TLS 1.2 with a CBC suite: ktlsd's record layer has only AEADs, so OpenSSL keeps the records.
 * A record that fails its MAC gets bad_record_mac before the close. */
static void test_tls_openssl_records(void **state)
{
	int cl, be;
	struct conn *c = open_conn(L_CBC, &cl);
	SSL *s = tls_client(cl);
	unsigned char rec[64];
	ssize_t n;

	SSL_set_max_proto_version(s, TLS1_2_VERSION);
	assert_int_equal(SSL_set_cipher_list(s, "ECDHE-ECDSA-AES128-SHA"), 1);
	be = tls_handshake(s, c);
	assert_ptr_equal(c->dp, &dp_userspace);
	assert_non_null(c->tls.ssl); /* OpenSSL's record layer */
	assert_int_equal(SSL_write(s, "ping", 4), 4);
	expect_bytes(be, "ping");
	write_all(be, "pong", 4);
	tls_expect(s, "pong");
	/* A record of the right type and size whose MAC cannot be right. */
	memset(rec, 0x5a, sizeof(rec));
	rec[0] = 23, rec[1] = 3, rec[2] = 3, rec[3] = 0, rec[4] = 48;
	write_all(cl, rec, 5 + 48);
	n = read_some(cl, rec, sizeof(rec));
	assert_true(n >= 7);
	assert_int_equal(rec[0], 21); /* the alert, encrypted: its record type shows */
	RUN_UNTIL(env.n_conns == 0);
	SSL_free(s);
	close(cl);
	close(be);
}

/* A TLS backend: the handshake with it (BACKEND_TLS), then records both ways, then both
 * close_notify. */
static void test_backend_tls(void **state)
{
	int cl, be, r = -1;
	struct conn *c = open_conn(L_BT, &cl);
	SSL *s = tls_client(cl), *b;

	peer_handshake(s);
	RUN_UNTIL(c->state == CONN_BACKEND_TLS);
	be = backend_end();
	b = SSL_new(bsctx);
	set_nonblock(be);
	SSL_set_fd(b, be);
	SSL_set_accept_state(b);
	peer_handshake(b);
	assert_true(SSL_is_init_finished(b));
	RUN_UNTIL(c->state == CONN_FORWARDING);
	assert_non_null(c->btls.ssl);
	assert_int_equal(SSL_write(s, "ping", 4), 4);
	tls_expect(b, "ping");
	assert_int_equal(SSL_write(b, "pong", 4), 4);
	tls_expect(s, "pong");
	SSL_shutdown(s);
	RUN_UNTIL(SSL_read(b, &r, 1) <= 0 && SSL_get_error(b, 0) == SSL_ERROR_ZERO_RETURN);
	SSL_shutdown(b);
	RUN_UNTIL(env.n_conns == 0);
	SSL_free(b);
	SSL_free(s);
	close(cl);
	close(be);
}

/* The backend speaks no TLS: the backend handshake fails, the client gets close_notify. */
static void test_backend_tls_fails(void **state)
{
	struct stats_listener *sl = st->listeners[L_BT].stats;
	uint64_t fails = atomic_load(&sl->backend_tls_failures[STATS_BTLS_HANDSHAKE]);
	int cl, be;
	struct conn *c = open_conn(L_BT, &cl);
	SSL *s = tls_client(cl);
	char b;

	peer_handshake(s);
	RUN_UNTIL(c->state == CONN_BACKEND_TLS);
	be = backend_end();
	write_all(be, "HTTP/1.0 400 no\r\n\r\n", 19);
	RUN_UNTIL(env.n_conns == 0);
	assert_int_equal(SSL_read(s, &b, 1), 0);
	assert_int_equal(SSL_get_error(s, 0), SSL_ERROR_ZERO_RETURN); /* a clean close_notify */
	assert_int_equal(atomic_load(&sl->backend_tls_failures[STATS_BTLS_HANDSHAKE]), fails + 1);
	SSL_free(s);
	close(cl);
	close(be);
}

/* The backend answers nothing within connect_ms. */
static void test_backend_tls_timeout(void **state)
{
	int cl, be;
	struct conn *c = open_conn(L_BT, &cl);
	SSL *s = tls_client(cl);

	peer_handshake(s);
	RUN_UNTIL(c->state == CONN_BACKEND_TLS);
	be = backend_end();
	conn_check_timeout(c, env.now_ms + 999);
	assert_int_equal(c->state, CONN_BACKEND_TLS);
	conn_check_timeout(c, env.now_ms + 1000);
	assert_int_not_equal(c->state, CONN_BACKEND_TLS);
	RUN_UNTIL(env.n_conns == 0);
	SSL_free(s);
	close(cl);
	close(be);
}

/* ---- kernel TLS (ktls-splice) with the kernel's part faked: the handoff's logic runs, the
 * kernel keeps passing bytes as they are ---- */

static int fake_setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	return 0;
}
static const struct ktls_ops fake_ktls = { .setsockopt = fake_setsockopt };

static void test_ktls_handoff_and_splice(void **state)
{
	struct datapath_caps caps = probed;
	int cl, be;
	struct conn *c;
	SSL *s;
	char buf[64];
	ssize_t n;

	caps.tier[CFG_DP_KTLS_SPLICE] = true;
	caps.ktls_ciphers = ~0u;
	datapath_set_caps(&caps);
	ktls_set_ops(&fake_ktls);
	c = open_conn(L_KT, &cl);
	assert_true(c->tls.ktls_candidate);
	s = tls_client(cl);
	be = tls_handshake(s, c);
	assert_ptr_equal(c->dp, &dp_splice);
	assert_null(c->tls.ssl);
	assert_null(c->cin.data); /* every userspace buffer is gone */
	/* No kernel TLS here: the client's record reaches the backend as it was sent. */
	assert_int_equal(SSL_write(s, "ping", 4), 4);
	n = read_some(be, buf, sizeof(buf));
	assert_true(n > 5);
	assert_int_equal(buf[0], 23); /* an application_data record */
	write_all(be, "pong", 4);
	expect_bytes(cl, "pong");
	shutdown(be, SHUT_WR); /* → close_notify (as bytes, here) and FIN to the client */
	n = read_some(cl, buf, sizeof(buf));
	assert_int_equal(n, 2);
	assert_int_equal(buf[0], 1);
	assert_int_equal(buf[1], 0);
	expect_eof(cl);
	shutdown(cl, SHUT_WR);
	expect_eof(be);
	RUN_UNTIL(env.n_conns == 0);
	SSL_free(s);
	close(cl);
	close(be);
}

static int fail_at_opt = -1; /* the setsockopt option that fails, -1 none */

static int failing_setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	if (opt == fail_at_opt) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}
static const struct ktls_ops failing_ktls = { .setsockopt = failing_setsockopt };

/* One kTLS connection whose install meets the failing option; returns its final tier, or
 * KTLSD_TIER_N when it closed. */
static int ktls_with_failure(int opt, unsigned ciphers)
{
	struct datapath_caps caps = probed;
	int cl, be, tier;
	struct conn *c;
	SSL *s;

	caps.tier[CFG_DP_KTLS_SPLICE] = true;
	caps.ktls_ciphers = ciphers;
	datapath_set_caps(&caps);
	fail_at_opt = opt;
	ktls_set_ops(&failing_ktls);
	c = open_conn(L_KT, &cl);
	s = tls_client(cl);
	peer_handshake(s);
	/* c is the only connection: once it is gone (closed half-way), it must not be read. */
	RUN_UNTIL(env.n_conns == 0 || c->state >= CONN_FORWARDING);
	be = backend_end();
	tier = env.n_conns && c->state == CONN_FORWARDING ? (int)c->dp->id : KTLSD_TIER_N;
	close(cl);
	close(be);
	RUN_UNTIL(env.n_conns == 0);
	SSL_free(s);
	return tier;
}

static void test_ktls_handoff_failures(void **state)
{
	/* The kernel lacks the cipher: userspace. */
	assert_int_equal(ktls_with_failure(-1, 0), KTLSD_TIER_USERSPACE);
	/* The ULP is refused: nothing changed on the socket, so userspace. */
	assert_int_equal(ktls_with_failure(TCP_ULP, ~0u), KTLSD_TIER_USERSPACE);
	/* TLS_RX refused after TLS_TX took: the socket is half-configured, so it closes. */
	assert_int_equal(ktls_with_failure(TLS_RX, ~0u), KTLSD_TIER_N);
}

/* ---- sockmap ---- */

static bool sockmap_here(void)
{
	if (probed.tier[CFG_DP_SOCKMAP])
		datapath_set_caps(&probed);
	return probed.tier[CFG_DP_SOCKMAP];
}

static void test_sockmap_forwarding_and_half_close(void **state)
{
	int cl, be;
	struct conn *c;

	if (!sockmap_here())
		skip(); /* the probe says why, in its log line */
	c = open_conn(L_SM, &cl);
	run();
	be = backend_end();
	assert_ptr_equal(c->dp, &dp_sockmap);
	assert_int_equal(c->acct.tier, KTLSD_TIER_SOCKMAP);
	write_all(cl, "ping", 4);
	expect_bytes(be, "ping"); /* by the kernel: no recv was queued */
	write_all(be, "pong", 4);
	expect_bytes(cl, "pong");
	conn_check_timeout(c, env.now_ms + 100); /* the tick reads the counters */
	assert_int_equal(c->bytes_c2b, 4);
	assert_int_equal(c->bytes_b2c, 4);
	fire_timers(); /* the backlog check */
	shutdown(cl, SHUT_WR);
	expect_eof(be);
	close(be);
	RUN_UNTIL(env.n_conns == 0);
	fire_timers();
	close(cl);
}

/* A passthrough connection: the ClientHello ktlsd read goes to the backend first, then the
 * sockets join the map and the kernel carries the rest. */
static void test_sockmap_handover_with_early_bytes(void **state)
{
	int cl, be;
	struct conn *c;
	SSL *s;
	char buf[512];

	if (!sockmap_here())
		skip();
	c = open_conn(L_PT, &cl);
	assert_int_equal(c->state, CONN_HELLO);
	s = tls_client(cl);
	SSL_do_handshake(s); /* sends the ClientHello */
	RUN_UNTIL(c->state == CONN_FORWARDING);
	be = backend_end();
	assert_true(read_some(be, buf, sizeof(buf)) > 5);
	assert_int_equal(buf[0], 22); /* the ClientHello, byte for byte */
	RUN_UNTIL(fq_find(c, OP_CRECV) < 0 && fq_find(c, OP_DP1) >= 0);
	write_all(cl, "more", 4);
	expect_bytes(be, "more");
	close(cl);
	close(be);
	RUN_UNTIL(env.n_conns == 0);
	fire_timers();
	SSL_free(s);
}

/* The client's FIN came with its ClientHello: the map takes only established sockets, so the
 * connection falls back to userspace, and its gauges follow it. */
static void test_sockmap_falls_back_to_userspace(void **state)
{
	struct stats_listener *sl = st->listeners[L_PT].stats;
	int64_t us = atomic_load(&sl->active_tier[KTLSD_TIER_USERSPACE]);
	int64_t sm = atomic_load(&sl->active_tier[KTLSD_TIER_SOCKMAP]);
	int cl, be;
	struct conn *c;
	SSL *s;
	char buf[512];

	if (!sockmap_here())
		skip();
	c = open_conn(L_PT, &cl);
	s = tls_client(cl);
	SSL_do_handshake(s);
	shutdown(cl, SHUT_WR);
	RUN_UNTIL(c->state == CONN_FORWARDING && c->dp == &dp_userspace);
	assert_int_equal(c->acct.tier, KTLSD_TIER_USERSPACE);
	assert_int_equal(atomic_load(&sl->active_tier[KTLSD_TIER_USERSPACE]), us + 1);
	assert_int_equal(atomic_load(&sl->active_tier[KTLSD_TIER_SOCKMAP]), sm);
	be = backend_end();
	assert_true(read_some(be, buf, sizeof(buf)) > 5);
	expect_eof(be);
	close(be);
	RUN_UNTIL(env.n_conns == 0);
	SSL_free(s);
	close(cl);
}

/* A backend that reads nothing while the client sends: the bytes wait in the kernel's sockmap
 * queue, and over the budget the backlog guard resets the connection. */
static void test_sockmap_backlog_guard(void **state)
{
	struct stats_listener *sl = st->listeners[L_SM].stats;
	uint64_t resets = atomic_load(&sl->sockmap_backlog_resets);
	static char chunk[1 << 16];
	int cl, be, sz = 4096;
	struct conn *c;

	if (!sockmap_here())
		skip();
	c = open_conn(L_SM, &cl);
	run();
	be = backend_end();
	setsockopt(be, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	set_nonblock(cl);
	for (int i = 0; i < 512 && send(cl, chunk, sizeof(chunk), MSG_DONTWAIT) > 0; i++)
		;
	usleep(20000);
	conn_check_timeout(c, env.now_ms + 100); /* the tick: bytes are on their way, hot */
	assert_true(dp_sockmap_backlog() > 0);
	dp_sockmap_check(&env, 1);
	RUN_UNTIL(env.n_conns == 0);
	assert_int_equal(atomic_load(&sl->sockmap_backlog_resets), resets + 1);
	fire_timers();
	close(cl);
	close(be);
}

/* Every outcome has its name in the one table (the log, the metrics and ktlsctl read it). */
static void test_every_end_is_named(void **state)
{
	for (unsigned e = 0; e < CONN_END_N; e++) {
		assert_non_null(conn_end_name((enum conn_end)e));
		for (unsigned f = 0; f < e; f++)
			assert_string_not_equal(conn_end_name((enum conn_end)e),
						conn_end_name((enum conn_end)f));
	}
	for (unsigned s = 0; s < CONN_STATE_N; s++)
		assert_string_not_equal(conn_state_name((enum conn_state)s), "?");
}

/* TLS 1.3 on ktlsd's record layer: a KeyUpdate asking for ours is answered, data still flows
 * both ways after it; a record that fails authentication gets bad_record_mac. */
static void test_rlayer_key_update_and_bad_record(void **state)
{
	int cl, be;
	struct conn *c = open_conn(L_WEB, &cl);
	SSL *s = tls_client(cl);
	unsigned char rec[64];

	be = tls_handshake(s, c);
	assert_non_null(c->tls.rl);
	assert_int_equal(SSL_key_update(s, SSL_KEY_UPDATE_REQUESTED), 1);
	assert_int_equal(SSL_write(s, "ping", 4), 4);
	expect_bytes(be, "ping");
	write_all(be, "pong", 4);
	tls_expect(s, "pong"); /* under the server's new key */
	memset(rec, 0x5a, sizeof(rec));
	rec[0] = 23, rec[1] = 3, rec[2] = 3, rec[3] = 0, rec[4] = 40;
	write_all(cl, rec, 5 + 40);
	assert_true(read_some(cl, rec, sizeof(rec)) >= 7); /* the alert */
	RUN_UNTIL(env.n_conns == 0);
	SSL_free(s);
	close(cl);
	close(be);
}

/* With the BPF programs loaded, a userspace connection gets its conns entry at its first tick,
 * and the entry follows its bytes. */
static void test_bpf_conns_entry(void **state)
{
	struct ktlsd_conn e;
	int cl, be;
	struct conn *c;

	if (!bpfmap_loaded())
		skip();
	c = open_conn(L_TWO, &cl);
	run();
	be = backend_end();
	stats_conn_flush(c); /* the worker's tick */
	assert_true(c->acct.cookie != 0);
	write_all(cl, "abc", 3);
	expect_bytes(be, "abc");
	stats_conn_flush(c);
	assert_int_equal(bpfmap_conn_get(c->acct.cookie, &e), 0);
	assert_int_equal(e.tier, KTLSD_TIER_USERSPACE);
	assert_int_equal(e.bytes_c2b, 3);
	shutdown(cl, SHUT_WR);
	expect_eof(be);
	stats_conn_flush(c);
	assert_int_equal(bpfmap_conn_get(c->acct.cookie, &e), 0);
	assert_int_equal(e.state, KTLSD_STATE_HALF_CLOSED);
	close(be);
	RUN_UNTIL(env.n_conns == 0);
	close(cl);
}

/* The seam's io_uring side delivers what the fake promises: one completion per operation, with
 * its tag, and a cancel that ends a waiting recv with -ECANCELED. */
static void test_ring_implementation(void **state)
{
	static const struct __kernel_timespec ts = { .tv_nsec = 1000000 };
	struct io_uring_cqe *cqe;
	struct sockaddr_in a;
	struct ring r;
	int lfd = listen_any(&a), sv[2], got = 0, fd;
	char buf[8];
	uint64_t tag = 0x1230;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(ring_init(&r, 16), 0);
	assert_int_equal(ring_start(&r), 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	conn_io_ring.send(&r, sv[0], "hi", 2, tag | OP_CSEND);
	conn_io_ring.recv(&r, sv[1], buf, sizeof(buf), tag | OP_CRECV);
	conn_io_ring.poll(&r, sv[1], POLLOUT, tag | OP_DP1);
	conn_io_ring.timeout(&r, &ts, tag | OP_TICK);
	conn_io_ring.connect(&r, fd, (struct sockaddr *)&a, sizeof(a), &ts, tag | OP_CONNECT,
			     tag | OP_LINKTO);
	conn_io_ring.recv(&r, sv[0], buf, sizeof(buf), tag | OP_BRECV); /* nothing comes */
	while (got < 6) {
		assert_true(ring_wait(&r) >= 0);
		while (io_uring_peek_cqe(&r.uring, &cqe) == 0) {
			uint64_t ud = io_uring_cqe_get_data64(cqe);

			assert_int_equal(ud & ~(uint64_t)RING_OP_MASK, tag);
			switch (ring_ud_op(ud)) {
			case OP_CSEND:
			case OP_CRECV:
				assert_int_equal(cqe->res, 2);
				break;
			case OP_CONNECT:
				assert_int_equal(cqe->res, 0);
				break;
			}
			io_uring_cqe_seen(&r.uring, cqe);
			got++;
		}
	}
	conn_io_ring.cancel(&r, tag | OP_BRECV);
	assert_true(ring_wait(&r) >= 0);
	assert_int_equal(io_uring_peek_cqe(&r.uring, &cqe), 0);
	assert_true(cqe->res == -ECANCELED || cqe->res == 0 || cqe->res == -ENOENT);
	io_uring_cqe_seen(&r.uring, cqe);
	ring_exit(&r);
	conn_io_ring.close(NULL, fd);
	close(sv[0]);
	close(sv[1]);
	close(lfd);
}

/* A test with the per-test setup and teardown: each starts and must end with no connection. */
#define T(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_end_is_named),
		cmocka_unit_test(test_ring_implementation),
		T(test_tcp_half_close_client_first),
		T(test_tcp_half_close_backend_first),
		T(test_backend_unreachable),
		T(test_connect_timeout_tries_the_next_server),
		T(test_park_and_unpark),
		T(test_client_reset_while_forwarding),
		T(test_tls_userspace_round_trip),
		T(test_tls_garbage_gets_an_alert),
		T(test_client_hello_timeout),
		T(test_handshake_timeout),
		T(test_flush_close_timeout),
		T(test_tls_openssl_records),
		T(test_rlayer_key_update_and_bad_record),
		T(test_bpf_conns_entry),
		T(test_backend_tls),
		T(test_backend_tls_fails),
		T(test_backend_tls_timeout),
		T(test_ktls_handoff_and_splice),
		T(test_ktls_handoff_failures),
		T(test_sockmap_forwarding_and_half_close),
		T(test_sockmap_handover_with_early_bytes),
		T(test_sockmap_falls_back_to_userspace),
		T(test_sockmap_backlog_guard),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
