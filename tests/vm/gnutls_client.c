/* gnutls_client — a client on the GnuTLS library for the VM suite, for what gnutls-cli cannot do:
 *
 *   gnutls_client alert  HOST PORT CAFILE PRIORITY
 *       sends a request, reads part of the response, then sends a fatal alert (internal_error,
 *       80) mid-stream; exit 0 when the server then closes the connection. OpenSSL has no public
 *       call to send an arbitrary alert; GnuTLS has gnutls_alert_send().
 *   gnutls_client upload HOST PORT CAFILE PRIORITY MIB
 *       PUTs MIB MiB of pseudo-random data to /sha256 and checks the backend's SHA-256 of what
 *       it got; exit 0 if equal.
 *   gnutls_client download HOST PORT CAFILE PRIORITY MIB SEED
 *       GETs /bytes/<MIB MiB>?seed=SEED and prints "<sha256 hex> <length>" of the body.
 * Bulk transfers use this rather than gnutls-cli, whose own I/O loop moves ~0.2 MiB/s under QEMU
 * TCG (measured: 36 s for an 8 MiB download) while the library moves 8 MiB in ~1 s. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

static int fail(const char *what, int err)
{
	fprintf(stderr, "gnutls_client: %s: %s\n", what, err ? gnutls_strerror(err) : "failed");
	return 1;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void fill(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p[i] = (unsigned char)rng;
	}
}

static int send_all(gnutls_session_t s, const void *p, size_t n)
{
	while (n) {
		ssize_t r = gnutls_record_send(s, p, n);

		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			continue;
		if (r < 0)
			return fail("send", (int)r);
		p = (const char *)p + r;
		n -= (size_t)r;
	}
	return 0;
}

/* PUT /sha256 with mib MiB; the backend answers "<hex sha256> <length>". */
static int upload(gnutls_session_t s, long mib)
{
	static unsigned char block[1 << 16];
	unsigned char digest[32];
	char head[256], hex[65], reply[4096];
	gnutls_hash_hd_t h;
	size_t total = (size_t)mib << 20, got = 0;
	ssize_t r;

	gnutls_hash_init(&h, GNUTLS_DIG_SHA256);
	snprintf(
	    head, sizeof(head),
	    "PUT /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    total);
	if (send_all(s, head, strlen(head)))
		return 1;
	for (size_t sent = 0; sent < total; sent += sizeof(block)) {
		fill(block, sizeof(block));
		gnutls_hash(h, block, sizeof(block));
		if (send_all(s, block, sizeof(block)))
			return 1;
	}
	gnutls_hash_deinit(h, digest);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	while (got < sizeof(reply) - 1 &&
	       (r = gnutls_record_recv(s, reply + got, sizeof(reply) - 1 - got)) > 0)
		got += (size_t)r;
	reply[got] = '\0';
	if (!strstr(reply, hex)) {
		fprintf(stderr, "gnutls_client: sent sha256 %s, backend said:\n%s\n", hex, reply);
		return 1;
	}
	printf("gnutls_client: %ld MiB uploaded, sha256 %s matches\n", mib, hex);
	return 0;
}

/* GET /bytes/N?seed=S; prints the body's SHA-256 and length. */
static int download(gnutls_session_t s, long mib, long seed)
{
	static char buf[1 << 16];
	unsigned char digest[32];
	char req[256];
	gnutls_hash_hd_t h;
	size_t body = 0, headlen = 0;
	bool in_body = false;
	char head[4096];
	ssize_t r;

	snprintf(req, sizeof(req),
		 "GET /bytes/%ld?seed=%ld HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		 mib << 20, seed);
	if (send_all(s, req, strlen(req)))
		return 1;
	gnutls_hash_init(&h, GNUTLS_DIG_SHA256);
	while ((r = gnutls_record_recv(s, buf, sizeof(buf))) > 0) {
		char *p = buf;
		size_t n = (size_t)r;

		if (!in_body) {
			size_t take =
			    n < sizeof(head) - 1 - headlen ? n : sizeof(head) - 1 - headlen;
			char *end;

			memcpy(head + headlen, buf, take);
			head[headlen + take] = '\0';
			end = strstr(head, "\r\n\r\n");
			if (!end) {
				headlen += take;
				continue;
			}
			size_t used = (size_t)(end + 4 - head) - headlen;
			p += used;
			n -= used;
			in_body = true;
		}
		gnutls_hash(h, p, n);
		body += n;
	}
	gnutls_hash_deinit(h, digest);
	if (r < 0)
		return fail("recv", (int)r);
	for (int i = 0; i < 32; i++)
		printf("%02x", digest[i]);
	printf(" %zu\n", body);
	return 0;
}

int main(int argc, char **argv)
{
	static const char req[] = "GET /bytes/4194304 HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 10 };
	gnutls_certificate_credentials_t cred;
	gnutls_session_t s;
	char buf[16384];
	long got = 0;
	int fd, r;

	bool up = argc == 7 && strcmp(argv[1], "upload") == 0;
	bool down = argc == 8 && strcmp(argv[1], "download") == 0;

	if (!up && !down && !(argc == 6 && strcmp(argv[1], "alert") == 0))
		return fprintf(stderr,
			       "usage: gnutls_client alert|upload|download HOST PORT CAFILE "
			       "PRIORITY [MIB [SEED]]\n"),
		       2;
	argv++;
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return fail("connect", 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	gnutls_certificate_allocate_credentials(&cred);
	if (gnutls_certificate_set_x509_trust_file(cred, argv[3], GNUTLS_X509_FMT_PEM) <= 0)
		return fail("CA file", 0);
	gnutls_init(&s, GNUTLS_CLIENT);
	gnutls_server_name_set(s, GNUTLS_NAME_DNS, "localhost", 9);
	if ((r = gnutls_priority_set_direct(s, argv[4], NULL)) < 0)
		return fail("priority", r);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
	gnutls_session_set_verify_cert(s, "localhost", 0);
	gnutls_transport_set_int(s, fd);
	do
		r = gnutls_handshake(s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0)
		return fail("handshake", r);
	if (up)
		return upload(s, atol(argv[5]));
	if (down)
		return download(s, atol(argv[5]), atol(argv[6]));
	if ((r = (int)gnutls_record_send(s, req, sizeof(req) - 1)) < 0)
		return fail("send", r);
	while (got < 65536) {
		r = (int)gnutls_record_recv(s, buf, sizeof(buf));
		if (r <= 0)
			return fail("recv before the alert", r);
		got += r;
	}
	if ((r = gnutls_alert_send(s, GNUTLS_AL_FATAL, GNUTLS_A_INTERNAL_ERROR)) < 0)
		return fail("alert_send", r);
	printf("gnutls_client: %ld bytes received, alert internal_error sent\n", got);
	/* The server must now close: drain whatever was in flight until EOF or an error. */
	for (;;) {
		r = (int)gnutls_record_recv(s, buf, sizeof(buf));
		if (r > 0)
			continue;
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			fprintf(stderr, "gnutls_client: the server did not close within 10 s\n");
			return 1;
		}
		printf("gnutls_client: server closed (%s)\n", r == 0 ? "EOF" : gnutls_strerror(r));
		return 0;
	}
}
