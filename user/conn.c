/* conn — lifecycle of a connection: accept, handshake, backend connect with retries and a linked
 * timeout, socket I/O bookkeeping shared by the tiers, timeouts, and teardown. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "backend.h"
#include "backend_tls.h"
#include "conn.h"
#include "datapath.h"
#include "handoff.h"
#include "handshake.h"
#include "hostname.h"
#include "log.h"
#include "mtls.h"
#include "passthrough.h"
#include "policy.h"
#include "proxyproto.h"
#include "rlayer.h"
#include "state.h"
#include "stats.h"
#include "tlsctx.h"
#include "vg.h"
#include "worker.h"

/* Buffer sizes (each allocated only while it holds data; docs/security.md has the bound). The
 * client's records and their plaintext get room for four full records each: the backend is sent
 * up to 64 KiB at a time while the next records are opened, which halves the wake-ups of the
 * backend per byte (a third less CPU per GiB uploaded; bench/results/profile.md). */
#define CIN_CAP (64u << 10)
#define COUT_CAP (64u << 10)
#define BIN_CAP (32u << 10)
#define BOUT_CAP (4u * RLAYER_MAX_OPEN) /* opened records, inner type and padding included */
/* A forwarding connection with no bytes either way for this long is parked: its recvs are
 * cancelled, its empty buffers freed and a poll waits for the next byte instead (park()). */
#define PARK_MS 1000u

static void pump(struct conn *c);

static inline bool busy(const struct conn *c, unsigned op)
{
	return c->inflight & (1u << op);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%u", host, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		snprintf(out, len, "?");
	}
}

/* The one line per finished handshake (DESIGN §2.1): peer, listener, SNI, certificate, protocol,
 * cipher, tier, result. Never key material. */
static void log_handshake(struct conn *c, const char *result)
{
	const struct cfg_listener *l = c->l->cfg;
	const char *sni = NULL, *proto = "-", *cipher = "-", *cert = "-";
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	char client[256] = "-", btls[128] = "", sni_text[HOSTNAME_TEXT_MAX];
	const char *resumed = "-";

	if (c->flags & CF_LOGGED)
		return;
	c->flags |= CF_LOGGED;
	if (l->protocol == CFG_PROTO_PASSTHROUGH) {
		passthrough_log(c, result);
		stats_conn_logged(c, result);
		return;
	}
	if (c->ssl) {
		sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
		if (SSL_is_init_finished(c->ssl)) {
			proto = SSL_get_version(c->ssl);
			cipher = SSL_get_cipher_name(c->ssl);
			SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
			int chosen = tlsctx_chosen_cert(c->ssl);

			if (chosen >= 0)
				cert = c->st->cfg->certs[l->certs[chosen]].name;
			resumed = SSL_session_reused(c->ssl) ? "yes" : "no";
		}
	}
	if (c->bssl && SSL_is_init_finished(c->bssl))
		snprintf(btls, sizeof(btls), " backend_tls=%s/%s", SSL_get_version(c->bssl),
			 SSL_get_cipher_name(c->bssl));
	if (c->ssl && l->client_auth.mode != CFG_CAUTH_NONE &&
	    mtls_peer_subject(c->ssl, client, sizeof(client)) < 0)
		snprintf(client, sizeof(client), "- (%s)", mtls_verify_reason(c->ssl));
	if (sni) /* any byte but NUL, as the client sent it */
		sni = hostname_text(sni, strlen(sni), sni_text, sizeof(sni_text));
	log_info(
	    "conn peer=%s listener=%s sni=%s cert=%s proto=%s cipher=%s alpn=%.*s client=\"%s\" "
	    "tier=%s%s%s%s backend=%s%s hs_ms=%llu resumed=%s result=%s",
	    c->peer_text, l->name, sni ? sni : "-", cert, proto, cipher,
	    alpn_len ? (int)alpn_len : 1, alpn_len ? (const char *)alpn : "-", client,
	    c->dp ? c->dp->name : "-", c->tier_note ? " (" : "", c->tier_note ? c->tier_note : "",
	    c->tier_note ? ")" : "", c->server ? c->server->text : "-", btls,
	    (unsigned long long)c->hs_ms, resumed, result);
	stats_conn_logged(c, result);
}

static void conn_free(struct conn *c)
{
	if (c->dp && c->dp->release)
		c->dp->release(c);
	/* The totals have the connection's last bytes before its sockets close: whoever sees the
	 * sockets gone (ss, a test, a scraper) sees complete counts. */
	stats_conn_freed(c);
	if (c->cfd >= 0)
		close(c->cfd);
	if (c->bfd >= 0)
		close(c->bfd);
	SSL_free(c->ssl);
	SSL_free(c->bssl);
	rlayer_free(c->rl);
	buf_release(&c->bcin);
	buf_release(&c->bcout);
	buf_release(&c->cin);
	buf_release(&c->cout);
	buf_release(&c->bin);
	buf_release(&c->bout);
	atomic_fetch_sub(&c->l->conns, 1);
	admit_release(&c->limits);
	worker_conn_removed(c->w, c);
	state_put(c->st);
	free(c);
}

void conn_close(struct conn *c, const char *reason)
{
	if (c->phase != CONN_CLOSING) {
		c->phase = CONN_CLOSING;
		c->reason = reason;
		admit_handshake_done(&c->limits);
		if (!(c->flags & CF_LOGGED))
			log_handshake(c, reason ? reason : "closed");
		else if (reason)
			log_debug("conn peer=%s listener=%s closed: %s (c2b=%llu b2c=%llu)",
				  c->peer_text, c->l->cfg->name, reason,
				  (unsigned long long)c->bytes_c2b,
				  (unsigned long long)c->bytes_b2c);
		for (unsigned op = OP_CRECV; op <= OP_DP4; op++)
			if (busy(c, op))
				ring_cancel(&c->w->ring, ring_ud(c, op));
	}
}

/* The last step of every entry point: a closing connection with nothing in flight is freed. */
static void settle(struct conn *c)
{
	if (c->phase == CONN_CLOSING && c->inflight == 0)
		conn_free(c);
}

void conn_abort(struct conn *c, const char *reason)
{
	conn_close(c, reason);
	settle(c);
}

static void release_if_empty(struct buf *b)
{
	if (b->data && !b->pins && buf_len(b) == 0)
		buf_release(b);
}

/* A parked connection waits for readability with a poll, which holds no buffer: an idle
 * connection costs its struct, its keys (rlayer, without cipher contexts) or its SSL (whose own
 * buffers OpenSSL releases), and its sockets. */
static void post_poll(struct conn *c, bool client)
{
	unsigned op = client ? OP_CRECV : OP_BRECV;
	struct io_uring_sqe *sqe;

	release_if_empty(&c->cin);
	release_if_empty(&c->cout);
	release_if_empty(&c->bin);
	release_if_empty(&c->bout);
	sqe = ring_sqe(&c->w->ring);
	io_uring_prep_poll_add(sqe, client ? c->cfd : c->bfd, POLLIN);
	io_uring_sqe_set_data64(sqe, ring_ud(c, op));
	c->inflight |= 1u << op;
	c->flags |= client ? CF_CPOLL : CF_BPOLL;
}

/* Connections parked on this worker's last two ticks: their buffers come back to malloc as the
 * cancelled recvs complete, after the tick that parked them. */
static __thread unsigned parked_now, parked_prev;

void conn_tick_done(void)
{
	/* free() keeps what it gets in the heap; give the pages of the released buffers back. */
	if (parked_prev)
		malloc_trim(0);
	parked_prev = parked_now;
	parked_now = 0;
}

/* Parks an idle userspace-tier connection whose buffers are all empty: the recvs holding them
 * are cancelled, and each comes back through on_recv and pump as a post_poll(). */
static void park(struct conn *c)
{
	/* Backend TLS keeps its own buffers (bcin, bcout) and SSL: not parked. */
	if (c->dp != &dp_userspace || c->bssl || (c->flags & CF_PARKED) || busy(c, OP_CSEND) ||
	    busy(c, OP_BSEND) || buf_len(&c->cin) || buf_len(&c->cout) || buf_len(&c->bin) ||
	    buf_len(&c->bout))
		return;
	c->flags |= CF_PARKED;
	parked_now++;
	log_debug("conn peer=%s listener=%s: parked (idle %llu ms)", c->peer_text, c->l->cfg->name,
		  (unsigned long long)(c->w->now_ms - c->active_ms));
	if (busy(c, OP_CRECV) && !(c->flags & CF_CPOLL))
		ring_cancel(&c->w->ring, ring_ud(c, OP_CRECV));
	if (busy(c, OP_BRECV) && !(c->flags & CF_BPOLL))
		ring_cancel(&c->w->ring, ring_ud(c, OP_BRECV));
	release_if_empty(&c->cin);
	release_if_empty(&c->cout);
	release_if_empty(&c->bin);
	release_if_empty(&c->bout);
	rlayer_idle(c->rl);
}

void conn_post_recv(struct conn *c, bool client)
{
	unsigned op = client ? OP_CRECV : OP_BRECV;
	struct buf *b = client ? &c->cin : conn_brx(c);
	struct io_uring_sqe *sqe;
	uint32_t len;

	if (busy(c, op) || (c->flags & (client ? CF_CIN_EOF : CF_BIN_EOF)))
		return;
	if ((c->flags & CF_PARKED) && buf_len(b) == 0) {
		post_poll(c, client);
		return;
	}
	if (buf_ready(b) < 0) {
		conn_close(c, "out of memory");
		return;
	}
	if (buf_space(b) < b->cap / 4)
		buf_compact(b);
	if (buf_space(b) == 0)
		return; /* backpressure: the other side must drain first */
	len = buf_space(b);
	/* Before a kernel handoff, take the client's handshake one record at a time: whatever
	 * follows its Finished stays in the socket for the kernel to decrypt. */
	if (client && c->ktls_candidate && c->phase == CONN_HANDSHAKE)
		len = (uint32_t)MIN(len, record_want(&c->rx_rec));
	sqe = ring_sqe(&c->w->ring);
	io_uring_prep_recv(sqe, client ? c->cfd : c->bfd, b->data + b->tail, len, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(c, op));
	c->inflight |= 1u << op;
	b->pins++;
}

void conn_post_send(struct conn *c, bool client)
{
	unsigned op = client ? OP_CSEND : OP_BSEND;
	struct buf *b = client ? c->c_tx : c->b_tx;
	struct io_uring_sqe *sqe;

	if (busy(c, op) || buf_len(b) == 0)
		return;
	sqe = ring_sqe(&c->w->ring);
	io_uring_prep_send(sqe, client ? c->cfd : c->bfd, b->data + b->head, buf_len(b),
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ring_ud(c, op));
	c->inflight |= 1u << op;
	b->pins++;
}

void conn_close_after_flush(struct conn *c, const char *reason)
{
	c->reason = reason;
	c->flags |= CF_FLUSH_CLOSE | CF_C_NOTIFY;
	conn_post_send(c, true);
	if (!busy(c, OP_CSEND))
		conn_close(c, reason);
}

void conn_shutdown_wr(struct conn *c, bool client)
{
	uint16_t flag = client ? CF_C_SHUT : CF_B_SHUT;

	if (c->flags & flag)
		return;
	c->flags |= flag;
	/* ENOTCONN when the peer already reset: the close that follows covers it. */
	shutdown(client ? c->cfd : c->bfd, SHUT_WR);
}

/* ---- backend connect ---- */

static void connect_next(struct conn *c)
{
	struct io_uring_sqe *sqe;
	const struct cfg_addr *a;
	int one = 1;

	a = backend_server(c->backend, c->first_server, c->attempt);
	if (!a) {
		c->server = NULL;
		log_handshake(c, "backend-unreachable");
		if (c->ssl) {
			SSL_shutdown(c->ssl); /* close_notify: a clean close for the client */
			c->flags |= CF_FLUSH_CLOSE;
			pump(c);
		} else {
			conn_close(c, "backend-unreachable");
		}
		return;
	}
	c->server = a;
	c->bfd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (c->bfd < 0) {
		log_err("listener %s: socket for backend %s: %s", c->l->cfg->name, a->text,
			strerror(errno));
		conn_close(c, "backend-socket");
		return;
	}
	setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->connect_ts.tv_sec = c->l->cfg->timeouts.connect_ms / 1000;
	c->connect_ts.tv_nsec = (long long)(c->l->cfg->timeouts.connect_ms % 1000) * 1000000;
	sqe = ring_sqe(&c->w->ring);
	io_uring_prep_connect(sqe, c->bfd, (const struct sockaddr *)&a->ss, a->len);
	io_uring_sqe_set_data64(sqe, ring_ud(c, OP_CONNECT));
	sqe->flags |= IOSQE_IO_LINK;
	sqe = ring_sqe(&c->w->ring);
	io_uring_prep_link_timeout(sqe, &c->connect_ts, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(c, OP_LINKTO));
	c->inflight |= 1u << OP_CONNECT | 1u << OP_LINKTO;
	c->attempt++;
}

/* The PROXY header goes first to the backend: it is put at the front of the buffer of bytes for
 * the backend, which the tiers send before anything else. */
static int queue_proxy_header(struct conn *c)
{
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	struct proxyproto_info info = { .src = &c->peer, .dst = &local, .tls = c->ssl != NULL };
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	char alpn_buf[256], cn[256];
	unsigned char hdr[PROXYPROTO_MAX];
	struct buf *b = c->b_tx;
	int n;

	if (getsockname(c->cfd, (struct sockaddr *)&local, &llen) < 0)
		memset(&local, 0, sizeof(local));
	if (c->ssl) {
		SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
		if (alpn_len) {
			snprintf(alpn_buf, sizeof(alpn_buf), "%.*s", (int)alpn_len, alpn);
			info.alpn = alpn_buf;
		}
		info.sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
		/* No authority TLV rather than bytes a backend may misread. */
		if (info.sni && !hostname_plain(info.sni, strlen(info.sni)))
			info.sni = NULL;
		info.version = SSL_get_version(c->ssl);
		info.cipher = SSL_get_cipher_name(c->ssl);
		if (mtls_peer_cn(c->ssl, cn, sizeof(cn)) == 0) {
			info.client_cn = cn;
			info.client_cert_verified = SSL_get_verify_result(c->ssl) == X509_V_OK;
		}
	}
	if (c->l->cfg->protocol == CFG_PROTO_PASSTHROUGH)
		info.sni = c->sni && hostname_plain(c->sni, strlen(c->sni)) ? c->sni : NULL;
	n = proxyproto_encode(c->l->cfg->proxy_protocol == CFG_PROXY_V1 ? 1 : 2, &info, hdr);
	if (n < 0)
		return n;
	/* In front of what the buffer already holds (a passthrough ClientHello); no receive is
	 * in flight into it while connecting. */
	if (b->pins)
		return -EBUSY;
	if (buf_ready(b) < 0)
		return -ENOMEM;
	buf_compact(b);
	if (buf_space(b) < (uint32_t)n)
		return -ENOMEM;
	memmove(b->data + n, b->data, buf_len(b));
	memcpy(b->data, hdr, (size_t)n);
	b->tail += (uint32_t)n;
	return 0;
}

static void start_forwarding(struct conn *c)
{
	c->phase = CONN_FORWARDING;
	c->dp = NULL; /* chosen by choose_tier() on the next pump */
	c->active_ms = c->w->now_ms;
}

/* The fastest tier this connection can have: kernel TLS when the handoff works, else userspace.
 * Logs the handshake line once the tier is known. */
static void choose_tier(struct conn *c)
{
	if (!c->ssl && datapath_sockmap_allowed(c->l->cfg) && dp_sockmap_attach(c) == 0) {
		c->dp = &dp_sockmap;
		log_handshake(c, "ok");
		c->dp->pump(c);
		return;
	}
	switch (handoff_try(c)) {
	case HANDOFF_WAIT:
	case HANDOFF_FATAL:
		return;
	case HANDOFF_DONE:
		log_handshake(c, "ok");
		handoff_release(c);
		break;
	case HANDOFF_USERSPACE:
		c->dp = &dp_userspace;
		/* ktlsd's record layer takes over from OpenSSL's when it can (rlayer.h). */
		if (handoff_rlayer(c)) {
			log_handshake(c, "ok");
			handoff_free_ssl(c);
			log_debug("conn peer=%s listener=%s: records by ktlsd's record layer from "
				  "here (SSL freed)",
				  c->peer_text, c->l->cfg->name);
		} else {
			log_handshake(c, "ok");
		}
		break;
	}
	c->dp->pump(c);
}

/* The backend handshake failed (why names the reason) or timed out: one log line, a count, and
 * a clean close for the client (close_notify, then FIN). */
static void backend_tls_failed(struct conn *c, const char *why, enum stats_btls kind)
{
	if (c->flags & CF_FLUSH_CLOSE)
		return; /* already failing: one line, one count */
	log_handshake(c, why);
	stats_backend_tls_failed(c->l->stats, kind);
	SSL_shutdown(c->ssl);
	ERR_clear_error();
	c->flags |= CF_FLUSH_CLOSE;
	pump(c);
}

static void pump_backend_handshake(struct conn *c)
{
	enum stats_btls kind = STATS_BTLS_HANDSHAKE;
	const char *why = NULL;
	int r = backend_tls_step(c, &why, &kind);

	if (r == 1) {
		start_forwarding(c);
		pump(c);
	} else if (r < 0) {
		backend_tls_failed(c, why, kind);
	} else {
		conn_post_send(c, false);
		conn_post_recv(c, false);
	}
}

/* The backend is connected: the PROXY header goes first, in clear, then (backend TLS) the
 * ClientHello, then the client's bytes. */
static void backend_connected(struct conn *c)
{
	if (c->l->bctx)
		c->b_tx = &c->bcout;
	if (c->l->cfg->proxy_protocol != CFG_PROXY_OFF && queue_proxy_header(c) < 0) {
		conn_close(c, "cannot build the PROXY header");
		return;
	}
	if (!c->l->bctx) {
		start_forwarding(c);
		return;
	}
	if (backend_tls_start(c, c->l->bctx) < 0) {
		conn_close(c, "out of memory");
		return;
	}
	c->bhs_start_ms = c->w->now_ms;
}

/* Both the connect and its linked timeout have completed: act on the connect's result. */
static void connect_done(struct conn *c)
{
	if (c->connect_res == 0) {
		backend_connected(c);
		return;
	}
	log_warn("listener %s: backend %s: connect: %s%s", c->l->cfg->name, c->server->text,
		 c->connect_res == -ECANCELED ? "timed out" : strerror(-c->connect_res),
		 c->attempt < c->backend->cfg->n_servers ? " (trying the next server)" : "");
	close(c->bfd);
	c->bfd = -1;
	connect_next(c);
}

static void start_connect(struct conn *c)
{
	c->phase = CONN_CONNECTING;
	c->first_server = backend_first(c->backend);
	c->attempt = 0;
	connect_next(c);
}

/* ---- the state machine ---- */

/* ACKs the client's last handshake flight now. When the handshake ends with the client's
 * Finished (TLS 1.3 without tickets, a resumed TLS 1.2 handshake), ktlsd has nothing to send
 * back, so the ACK would wait for the delayed-ACK timer (~40 ms), and a client with Nagle on holds
 * its first request until then. TCP_QUICKACK sends a scheduled ACK at once (tcp(7);
 * docs/datapath.md, "The first request"). */
static void ack_now(struct conn *c)
{
	int one = 1;

	setsockopt(c->cfd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

/* Whether OpenSSL has read the whole ClientHello: it is past the states of reading one. */
static bool hello_read(SSL *ssl)
{
	OSSL_HANDSHAKE_STATE s = SSL_get_state(ssl);

	return s != TLS_ST_BEFORE && s != TLS_ST_SR_CLNT_HELLO;
}

static void pump_handshake(struct conn *c)
{
	const char *why = NULL;
	int r = c->ssl ? handshake_step(c, &why) : passthrough_step(c, &why);

	if (c->ssl && hello_read(c->ssl))
		c->flags |= CF_HELLO;

	if (r == 1) {
		admit_handshake_done(&c->limits);
		c->hs_ms = c->w->now_ms - c->start_ms;
		if (c->ssl)
			ack_now(c);
		if (c->ssl && handshake_client_done(c)) {
			/* Nothing to forward: answer the close_notify and close, no backend. */
			c->tier_note = "client closed before sending data: backend not connected";
			log_handshake(c, "ok");
			SSL_shutdown(c->ssl);
			c->reason = NULL;
			c->flags |= CF_FLUSH_CLOSE;
			return;
		}
		start_connect(c);
		return;
	}
	if (r < 0 && !c->ssl) {
		conn_close(c, why);
		return;
	}
	if (r < 0) {
		log_handshake(c, why);
		c->reason = "handshake failed";
		c->flags |= CF_FLUSH_CLOSE; /* send the alert OpenSSL queued, then close */
		return;
	}
	conn_post_send(c, true);
	conn_post_recv(c, true);
}

static void pump(struct conn *c)
{
	if (c->phase == CONN_CLOSING)
		return;
	if (c->flags & CF_FLUSH_CLOSE) {
		conn_post_send(c, true);
		if (!busy(c, OP_CSEND))
			conn_close(c, c->reason);
		return;
	}
	switch (c->phase) {
	case CONN_HANDSHAKE:
		pump_handshake(c);
		if (c->flags & CF_FLUSH_CLOSE)
			pump(c);
		break;
	case CONN_CONNECTING:
		/* Keep the handshake's last flight moving while the backend connects. */
		conn_post_send(c, true);
		if (c->bssl)
			pump_backend_handshake(c);
		break;
	case CONN_FORWARDING:
		if (c->dp)
			c->dp->pump(c);
		else
			choose_tier(c);
		break;
	}
}

static void on_recv(struct conn *c, bool client, int res)
{
	struct buf *b = client ? &c->cin : conn_brx(c);
	uint16_t poll_flag = client ? CF_CPOLL : CF_BPOLL;

	if (c->flags & poll_flag) { /* readable (or an error the recv will report): unpark */
		c->flags &= (uint16_t)~poll_flag;
		if (res != -ECANCELED)
			c->flags &= (uint16_t)~CF_PARKED;
		return;
	}
	b->pins--;
	if (res == -ECANCELED && (c->flags & CF_PARKED))
		return; /* park() took the buffer back */
	if (res > 0) {
		c->flags &= (uint16_t)~CF_PARKED;
		vg_kernel_wrote(b->data + b->tail, (size_t)res);
		if (client && c->ktls_candidate)
			record_feed(&c->rx_rec, b->data + b->tail, (size_t)res);
		b->tail += (uint32_t)res;
		c->active_ms = c->w->now_ms;
		if (!conn_tls(
			c)) /* plain forwarding: payload is what arrives; TLS counts plaintext */
			*(client ? &c->bytes_c2b : &c->bytes_b2c) += (uint64_t)res;
	} else if (res == 0) {
		c->flags |= client ? CF_CIN_EOF : CF_BIN_EOF;
	} else if (!client && c->bssl && c->phase == CONN_CONNECTING) {
		backend_tls_failed(c,
				   res == -ECONNRESET ? "backend TLS handshake failed: the backend "
							"reset the connection"
						      : "backend TLS handshake failed: recv error",
				   STATS_BTLS_HANDSHAKE);
	} else if (res == -ECANCELED && c->phase == CONN_FORWARDING) {
		/* a tier took the socket over (dp_sockmap) */
	} else if (c->phase != CONN_CLOSING) {
		conn_close(c, client
				  ? (res == -ECONNRESET ? "client reset" : "client recv error")
				  : (res == -ECONNRESET ? "backend reset" : "backend recv error"));
	}
}

static void on_send(struct conn *c, bool client, int res)
{
	struct buf *b = client ? c->c_tx : c->b_tx;

	b->pins--;
	if (res > 0) {
		buf_consume(b, (uint32_t)res);
		c->active_ms = c->w->now_ms;
	} else if (!client && c->bssl && c->phase == CONN_CONNECTING) {
		backend_tls_failed(c, "backend TLS handshake failed: send error",
				   STATS_BTLS_HANDSHAKE);
	} else if (c->phase != CONN_CLOSING) {
		bool reset = res == -ECONNRESET || res == -EPIPE;

		conn_close(c, client ? (reset ? "client reset" : "client send failed")
				     : (reset ? "backend reset" : "backend send failed"));
	}
}

void conn_complete(struct conn *c, unsigned op, int res)
{
	c->inflight &= (uint16_t) ~(1u << op);
	switch (op) {
	case OP_CRECV:
	case OP_BRECV:
		on_recv(c, op == OP_CRECV, res);
		break;
	case OP_CSEND:
	case OP_BSEND:
		on_send(c, op == OP_CSEND, res);
		break;
	case OP_CONNECT:
		c->connect_res = res;
		break;
	case OP_LINKTO:
		break;
	case OP_DP1:
	case OP_DP2:
	case OP_DP3:
	case OP_DP4:
		if (c->dp && c->dp->complete)
			c->dp->complete(c, op, res);
		break;
	}
	if (c->phase == CONN_CLOSING) {
		settle(c);
		return;
	}
	if ((op == OP_CONNECT || op == OP_LINKTO) && !busy(c, OP_CONNECT) && !busy(c, OP_LINKTO))
		connect_done(c);
	pump(c);
	settle(c);
}

/* Every phase has a deadline (docs/security.md): a connection sending its last records (an alert,
 * a close_notify) has close_ms to get them out, whatever the client's window; one that has not
 * sent its whole ClientHello has client_hello_ms from accept (passthrough: its whole handshake
 * phase), one in its handshake handshake_ms; connecting has the connect timeout of each server
 * and, with backend TLS, connect_ms for that handshake; forwarding has idle_ms. */
void conn_check_timeout(struct conn *c, uint64_t now_ms)
{
	const struct cfg_listener *l = c->l->cfg;
	const uint64_t hello_ms = MIN(l->timeouts.client_hello_ms, l->timeouts.handshake_ms);

	if ((c->flags & CF_FLUSH_CLOSE) && !c->flush_ms)
		c->flush_ms = now_ms;
	if ((c->flags & CF_FLUSH_CLOSE) && now_ms - c->flush_ms >= l->timeouts.close_ms)
		conn_close(c, "close timeout: the client took none of the last records");
	else if (c->phase == CONN_HANDSHAKE && !(c->flags & CF_HELLO) &&
		 now_ms - c->start_ms >= hello_ms)
		conn_close(c, "client hello timeout");
	else if (c->phase == CONN_HANDSHAKE && now_ms - c->start_ms >= l->timeouts.handshake_ms)
		conn_close(c, "handshake timeout");
	else if (c->phase == CONN_FORWARDING && c->dp && c->dp->tick)
		c->dp->tick(c);
	if (c->phase == CONN_FORWARDING && now_ms - c->active_ms >= l->timeouts.idle_ms)
		conn_close(c, "idle timeout");
	else if (c->phase == CONN_CONNECTING && c->bssl && !(c->flags & CF_FLUSH_CLOSE) &&
		 now_ms - c->bhs_start_ms >= l->timeouts.connect_ms)
		backend_tls_failed(c, "backend TLS handshake timed out", STATS_BTLS_TIMEOUT);
	else if (c->phase == CONN_FORWARDING && now_ms - c->active_ms >= PARK_MS)
		park(c);
	settle(c);
}

int conn_accept(struct worker *w, struct listener_rt *l, int fd,
		const struct sockaddr_storage *peer, struct admit_hold *hold)
{
	struct conn *c = aligned_alloc(16, sizeof(*c));

	if (!c) {
		close(fd);
		atomic_fetch_sub(&l->conns, 1);
		return -ENOMEM;
	}
	memset(c, 0, sizeof(*c));
	c->w = w;
	c->l = l;
	c->st = state_get(w->st);
	c->cfd = fd;
	c->bfd = -1;
	c->start_ms = c->active_ms = w->now_ms;
	c->cin.cap = CIN_CAP;
	c->cout.cap = COUT_CAP;
	c->bin.cap = BIN_CAP;
	c->bout.cap = BOUT_CAP;
	c->bcin.cap = BIN_CAP;
	c->bcout.cap = COUT_CAP;
	c->backend = l->backend;
	c->peer = *peer;
	c->limits = *hold;
	*hold = (struct admit_hold){ 0 };
	addr_text(&c->peer, c->peer_text, sizeof(c->peer_text));
	worker_conn_added(w, c);
	if (l->cfg->protocol == CFG_PROTO_TLS) {
		c->ktls_candidate = datapath_ktls_allowed(l->cfg);
		c->c_tx = &c->cout;
		c->b_tx = &c->bout;
		c->phase = CONN_HANDSHAKE;
		if (handshake_start(c, l->ctx) < 0)
			conn_close(c, "out of memory");
		else
			pump(c);
	} else {
		c->c_tx = &c->bin;
		c->b_tx = &c->cin;
		if (l->cfg->protocol == CFG_PROTO_PASSTHROUGH) {
			c->phase = CONN_HANDSHAKE; /* read the ClientHello, then connect */
			pump(c);
		} else {
			start_connect(c);
		}
	}
	settle(c);
	return 0;
}
