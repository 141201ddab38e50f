/* tlsload — the benchmark's TLS client: one thread, epoll, non-blocking OpenSSL connections with
 * the cipher pinned (TLSv1.3, TLS_AES_128_GCM_SHA256, X25519; with -V 1.2: TLSv1.2,
 * ECDHE-ECDSA/RSA-AES128-GCM-SHA256, X25519, offering P-256 for the ECDSA certificate), no
 * certificate verification (the client's CPU goes to load, not to checking a self-signed chain)
 * and never a resumed session. It speaks sinkd's one-byte protocol (bench/sinkd.c) through the
 * terminator under test.
 *
 *   tlsload up   ADDR -c CONNS -t SECS   bulk client → server; prints the bytes/s after warm-up
 *   tlsload down ADDR -c CONNS -t SECS   bulk server → client
 *   tlsload hs   ADDR -c CONNS -t SECS   full handshakes/s (connect, handshake, close_notify)
 *   tlsload lat  ADDR -c CONNS -t SECS -r RATE
 *                                        1 KiB request → 1 KiB echo at RATE requests/s in all,
 *                                        latency from the scheduled send time (no coordinated
 *                                        omission); prints p50/p99 in microseconds
 *   tlsload req  ADDR -c CONNS -t SECS   a new connection per request, CONNS in flight: connect,
 *                                        full handshake (SSL_connect), then at once one SSL_write
 *                                        of the request ('E' + 1 KiB), read the 1 KiB echo and
 *                                        check it, close_notify, close, and the next connection;
 *                                        prints requests/s and the p50/p99 of connect → response
 *                                        read, and short=N responses that ended early or differed
 *   tlsload idle ADDR -n CONNS           opens CONNS connections, one byte round trip each, prints
 *                                        "ready N" and holds them until stdin closes
 *
 * Options for every mode: -N leaves Nagle on (no TCP_NODELAY on the client's sockets; by default
 * it is set), -V 1.2|1.3 the protocol version (1.3), -w MS the warm-up (1000 ms).
 *
 * The warm-up (first second by default) of every timed run is not counted. Output is one line of
 * key=value pairs; errors=N counts connections that failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define IO_CHUNK (16u << 10)
#define BULK_TURN 16u /* chunks one bulk connection moves before the next one's turn */
#define REQ 1024u

enum mode { M_UP, M_DOWN, M_HS, M_LAT, M_IDLE, M_REQ };
enum st { S_CONNECT, S_HS, S_HELLO, S_RUN, S_WAIT, S_DONE };

struct cl {
	int fd;
	SSL *ssl;
	enum st st;
	uint32_t sent, got; /* of the current request (lat, req) or hello (idle) */
	uint64_t next_ns;   /* lat: when the next request is due; req: when the connect began */
	uint64_t hs_ns;	    /* req: when the handshake completed (SSL_connect returned) */
	uint32_t events;    /* what epoll waits for now */
};

static enum mode mode;
static struct sockaddr_in target;
static SSL_CTX *ctx;
static int ep;
static uint64_t t_start, t_count, t_end, counted, total_bytes, errors, ready;
static uint64_t period_ns, warmup_ns = 1000000000ull, shorts;
static bool nodelay = true;
static uint8_t reqbuf[1 + REQ]; /* req: sinkd's 'E', then the 1 KiB echoed back */
struct lats {
	uint64_t *us;
	size_t n, cap;
};
static struct lats lat, conn_lat; /* lat/req: request → response; req: connect → response */
static uint8_t iobuf[IO_CHUNK];
static struct cl *cls;
static unsigned conns = 1, opened;

static int cl_open(struct cl *c);

/* idle: one connection is established; start the next one. */
static void idle_next(void)
{
	if (opened < conns && cl_open(&cls[opened]) < 0) {
		errors++;
		cls[opened].st = S_DONE;
	}
	opened += opened < conns;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void arm(struct cl *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	epoll_ctl(ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
	c->events = events;
}

static int cl_open(struct cl *c)
{
	int one = 1;

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (nodelay)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->next_ns = now_ns();
	if (connect(c->fd, (struct sockaddr *)&target, sizeof(target)) < 0 &&
	    errno != EINPROGRESS) {
		int e = errno;

		close(c->fd);
		return -e;
	}
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_connect_state(c->ssl);
	c->st = S_CONNECT;
	arm(c, EPOLLOUT);
	return 0;
}

static void cl_close(struct cl *c)
{
	if (c->ssl && c->st >= S_HELLO)
		SSL_shutdown(c->ssl);
	SSL_free(c->ssl);
	c->ssl = NULL;
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->st = S_DONE;
}

/* Maps an OpenSSL result to what to wait for; false on a real error. */
static bool want(struct cl *c, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		arm(c, EPOLLIN);
		return true;
	case SSL_ERROR_WANT_WRITE:
		arm(c, EPOLLOUT);
		return true;
	default:
		ERR_clear_error();
		return false;
	}
}

/* One request/response step of lat and req: writes out[0, n) (c->sent of it so far), then reads
 * the REQ-byte response (c->got so far), compared with check when not NULL. 1 once the response is
 * whole, 0 while waiting for the socket, -1 on failure (an error, EOF, or bytes that differ). */
static int exchange(struct cl *c, const uint8_t *out, uint32_t n, const uint8_t *check)
{
	int r;

	while (c->sent < n) {
		r = SSL_write(c->ssl, out + c->sent, (int)(n - c->sent));
		if (r <= 0)
			return want(c, r) ? 0 : -1;
		c->sent += (uint32_t)r;
	}
	while (c->got < REQ) {
		r = SSL_read(c->ssl, iobuf, (int)(REQ - c->got));
		if (r <= 0)
			return want(c, r) ? 0 : -1;
		if (check && memcmp(iobuf, check + c->got, (size_t)r))
			return -1;
		c->got += (uint32_t)r;
	}
	return 1;
}

static void record_latency(struct lats *l, uint64_t ns)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 65536;
		l->us = realloc(l->us, l->cap * sizeof(*l->us));
		if (!l->us)
			abort();
	}
	l->us[l->n++] = ns / 1000;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorts the samples; the q-quantile (0 ≤ q < 1) of them afterwards, 0 without samples. */
static unsigned long long quantile(struct lats *l, double q)
{
	static struct lats *sorted;

	if (!l->n)
		return 0;
	if (sorted != l) {
		qsort(l->us, l->n, sizeof(*l->us), cmp_u64);
		sorted = l;
	}
	return (unsigned long long)l->us[(size_t)((double)l->n * q)];
}

/* Advances one connection as far as it can go; false when it failed. */
static bool step(struct cl *c, uint64_t now)
{
	int r;

	switch (c->st) {
	case S_CONNECT: {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err)
			return false;
		c->st = S_HS;
	}
		/* fall through */
	case S_HS:
		r = SSL_do_handshake(c->ssl);
		if (r != 1)
			return want(c, r);
		if (mode == M_HS) {
			total_bytes++; /* handshakes, warm-up included */
			if (now >= t_count && now < t_end)
				counted++;
			c->st = S_HELLO; /* so cl_close sends close_notify */
			cl_close(c);
			return true;
		}
		if (mode == M_REQ) { /* the request right after SSL_connect, as a client would */
			c->st = S_RUN;
			c->sent = c->got = 0;
			c->hs_ns = now_ns();
			break;
		}
		c->st = S_HELLO;
		c->sent = 0;
		/* fall through */
	case S_HELLO: {
		static const char hello[] = { 'U', 'D', 'E', 'E', 'E', 'E' };
		char b[2] = { hello[mode], 'x' };
		int len = mode == M_IDLE ? 2 : 1;

		r = SSL_write(c->ssl, b, len);
		if (r <= 0)
			return want(c, r);
		c->st = mode == M_IDLE ? S_WAIT : S_RUN;
		c->got = 0;
		c->next_ns = now;
		if (mode == M_LAT)
			c->st = S_WAIT;
		break;
	}
	default:
		break;
	}
	for (unsigned chunks = 0;; chunks++) {
		/* Bulk: BULK_TURN chunks per turn, then the other connections' turn. A terminator
		 * that drains as fast as this client writes never makes SSL_write wait, and one
		 * connection would then keep the loop (and the warm-up's end) to itself. */
		if ((mode == M_UP || (mode == M_DOWN && !SSL_pending(c->ssl))) &&
		    chunks == BULK_TURN) {
			arm(c, mode == M_UP ? EPOLLOUT : EPOLLIN);
			return true;
		}
		if (mode == M_UP) {
			r = SSL_write(c->ssl, iobuf, IO_CHUNK);
			if (r <= 0)
				return want(c, r);
			total_bytes += (uint64_t)r;
			if (now_ns() >= t_count)
				counted += (uint64_t)r;
		} else if (mode == M_DOWN) {
			r = SSL_read(c->ssl, iobuf, IO_CHUNK);
			if (r <= 0)
				return want(c, r);
			total_bytes += (uint64_t)r;
			if (now_ns() >= t_count)
				counted += (uint64_t)r;
		} else if (mode == M_IDLE) {
			if (c->st != S_WAIT)
				return true;
			r = SSL_read(c->ssl, iobuf, 1);
			if (r <= 0)
				return want(c, r);
			c->st = S_RUN;
			ready++;
			arm(c, EPOLLIN);
			idle_next();
			return true;
		} else if (mode == M_REQ) {
			/* EOF or error: a short response (main loop) */
			r = exchange(c, reqbuf, sizeof(reqbuf), reqbuf + 1);
			if (r <= 0)
				return r == 0;
			now = now_ns();
			total_bytes++; /* requests, warm-up included */
			if (now >= t_count && now < t_end) {
				counted++;
				record_latency(&lat, now - c->hs_ns);
				record_latency(&conn_lat, now - c->next_ns);
			}
			cl_close(c);
			return true;
		} else { /* M_LAT */
			if (c->st == S_WAIT) {
				if (now < c->next_ns) {
					arm(c, EPOLLIN);
					return true;
				}
				c->st = S_RUN;
				c->sent = c->got = 0;
			}
			r = exchange(c, iobuf, REQ, NULL);
			if (r <= 0)
				return r == 0;
			now = now_ns();
			if (c->next_ns >= t_count && c->next_ns < t_end)
				record_latency(&lat, now - c->next_ns);
			c->next_ns += period_ns;
			c->st = S_WAIT;
		}
	}
}

static void usage(void)
{
	fprintf(stderr,
		"usage: tlsload up|down|hs|lat|idle|req HOST:PORT [-c CONNS] [-t SECS] [-r RATE] "
		"[-n CONNS] [-N] [-V 1.2|1.3] [-w MS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const char *names[] = { "up", "down", "hs", "lat", "idle", "req" };
	unsigned secs = 5, rate = 1000, total = 0;
	bool tls12 = false;
	struct epoll_event evs[512];
	struct rlimit rl;
	char host[64];
	unsigned port;
	int opt;

	if (argc < 3)
		usage();
	for (mode = M_UP; mode <= M_REQ; mode++)
		if (!strcmp(argv[1], names[mode]))
			break;
	if (mode > M_REQ || sscanf(argv[2], "%63[^:]:%u", host, &port) != 2)
		usage();
	optind = 3;
	while ((opt = getopt(argc, argv, "c:t:r:n:NV:w:")) != -1) {
		switch (opt) {
		case 'c':
			conns = (unsigned)atoi(optarg);
			break;
		case 't':
			secs = (unsigned)atoi(optarg);
			break;
		case 'r':
			rate = (unsigned)atoi(optarg);
			break;
		case 'n':
			total = (unsigned)atoi(optarg);
			break;
		case 'N':
			nodelay = false;
			break;
		case 'V':
			if (strcmp(optarg, "1.2") && strcmp(optarg, "1.3"))
				usage();
			tls12 = !strcmp(optarg, "1.2");
			break;
		case 'w':
			warmup_ns = (uint64_t)atoi(optarg) * 1000000ull;
			break;
		default:
			usage();
		}
	}
	if (mode == M_IDLE)
		conns = total;
	if (!conns || !rate)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
		usage();
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
	    !SSL_CTX_set_cipher_list(ctx,
				     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256") ||
	    /* TLS 1.2 also reads the groups as the curves a client takes an ECDSA certificate on
	     * (RFC 8422 §5.1.1): P-256 for the certificate, X25519 first for the key exchange */
	    !SSL_CTX_set1_groups_list(ctx, tls12 ? "X25519:P-256" : "X25519")) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	ep = epoll_create1(EPOLL_CLOEXEC);
	cls = calloc(conns, sizeof(*cls));
	if (ep < 0 || !cls)
		return 1;
	memset(iobuf, 'q', sizeof(iobuf));
	reqbuf[0] = 'E';
	for (unsigned i = 1; i < sizeof(reqbuf); i++) /* an echo of other bytes is caught */
		reqbuf[i] = (uint8_t)('a' + i % 26);
	period_ns = (uint64_t)conns * 1000000000ull / rate;

	uint64_t t0 = now_ns();
	const unsigned idle_burst = 64; /* idle: handshakes in flight at once */

	t_start = t0;
	t_count = t0 + warmup_ns;
	t_end = t_count + (uint64_t)secs * 1000000000ull;
	if (mode == M_IDLE)
		t_end = UINT64_MAX;
	for (unsigned i = 0; i < conns; i++) {
		if (mode == M_IDLE && i >= idle_burst)
			break;
		if (cl_open(&cls[i]) < 0) {
			errors++;
			cls[i].st = S_DONE;
		}
		opened++;
		if (mode == M_LAT) /* spread the connections' schedules over one period */
			cls[i].next_ns = t0 + period_ns * i / conns;
	}
	for (;;) {
		uint64_t now = now_ns();
		int timeout = 100, n;

		if (now >= t_end)
			break;
		if (mode == M_IDLE && ready + errors == conns) {
			printf("ready %llu errors=%llu\n", (unsigned long long)ready,
			       (unsigned long long)errors);
			fflush(stdout);
			struct pollfd pfd = { .fd = 0, .events = POLLIN };

			while (poll(&pfd, 1, -1) == 1 && read(0, iobuf, sizeof(iobuf)) > 0)
				;
			break;
		}
		if (mode == M_LAT) {
			/* Wake for the earliest request due. */
			uint64_t next = now + 100000000ull;

			for (unsigned i = 0; i < conns; i++) {
				if (cls[i].st == S_WAIT && cls[i].next_ns < next)
					next = cls[i].next_ns;
				if (cls[i].st == S_WAIT && cls[i].next_ns <= now &&
				    !step(&cls[i], now)) {
					errors++;
					cl_close(&cls[i]);
				}
			}
			timeout = next > now ? (int)((next - now + 999999) / 1000000) : 0;
		}
		n = epoll_wait(ep, evs, 512, timeout);
		now = now_ns();
		for (int i = 0; i < n; i++) {
			struct cl *c = evs[i].data.ptr;

			if (c->st == S_DONE)
				continue;
			if (!step(c, now)) {
				errors++;
				/* req: the request went out whole and the response ended early
				 * (EOF, error) or differed from it */
				if (mode == M_REQ && c->st == S_RUN && c->sent == sizeof(reqbuf))
					shorts++;
				cl_close(c);
				if (mode == M_IDLE)
					idle_next();
			}
			if (c->st == S_DONE && (mode == M_HS || mode == M_REQ) && now < t_end &&
			    cl_open(c) < 0) {
				errors++;
				c->st = S_DONE;
			}
		}
	}
	double secs_counted = (double)((now_ns() < t_end ? now_ns() : t_end) - t_count) / 1e9;

	switch (mode) {
	case M_UP:
	case M_DOWN:
		printf("bytes=%llu total=%llu secs=%.3f bps=%.0f errors=%llu\n",
		       (unsigned long long)counted, (unsigned long long)total_bytes, secs_counted,
		       (double)counted / secs_counted, (unsigned long long)errors);
		break;
	case M_HS:
		printf("handshakes=%llu total=%llu secs=%.3f rate=%.1f errors=%llu\n",
		       (unsigned long long)counted, (unsigned long long)total_bytes, secs_counted,
		       (double)counted / secs_counted, (unsigned long long)errors);
		break;
	case M_LAT:
		printf("requests=%zu p50_us=%llu p99_us=%llu errors=%llu\n", lat.n,
		       quantile(&lat, 0.5), quantile(&lat, 0.99), (unsigned long long)errors);
		break;
	case M_REQ: /* p50/p99: connect → response; req_p50: handshake done → response */
		printf("requests=%llu total=%llu secs=%.3f rate=%.1f p50_us=%llu p99_us=%llu ",
		       (unsigned long long)counted, (unsigned long long)total_bytes, secs_counted,
		       (double)counted / secs_counted, quantile(&conn_lat, 0.5),
		       quantile(&conn_lat, 0.99));
		printf("req_p50_us=%llu short=%llu errors=%llu\n", quantile(&lat, 0.5),
		       (unsigned long long)shorts, (unsigned long long)errors);
		break;
	case M_IDLE:
		break;
	}
	return 0;
}
