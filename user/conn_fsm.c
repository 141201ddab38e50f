/* conn_fsm — a connection's state machine (see conn_fsm.h): accept, the client's handshake or
 * ClientHello, the backend connect with retries and a deadline, the backend's handshake, the
 * hand-over to a tier, the completions of the operations conn.c posts, and every deadline. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "backend.h"
#include "backend_tls.h"
#include "conn.h"
#include "conn_fsm.h"
#include "log.h"
#include "datapath.h"
#include "handshake.h"
#include "hostname.h"
#include "mtls.h"
#include "passthrough.h"
#include "proxyproto.h"
#include "rlayer.h"
#include "state.h"
#include "stats.h"
#include "tier.h"
#include "vg.h"

/* Buffer sizes (each allocated only while it holds data; docs/security.md has the bound). The
 * client's records and their plaintext get room for four full records each: the backend is sent
 * up to 64 KiB at a time while the next records are opened, which halves the wake-ups of the
 * backend per byte (a third less CPU per GiB uploaded; bench/results/profile.md). */
#define CIN_CAP (64u << 10)
#define COUT_CAP (64u << 10)
#define BIN_CAP (32u << 10)
#define BOUT_CAP (4u * RLAYER_MAX_OPEN) /* opened records, inner type and padding included */
/* A forwarding connection with no bytes either way for this long is told so (its tier's idle
 * op): the userspace tier then parks it. */
#define PARK_MS 1000u

static void pump(struct conn *c);

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

/* Enters FLUSH from the state machine: what cout holds (an alert, a close_notify) goes to the
 * client, then the connection closes with end. */
static void flush_then_close(struct conn *c, enum conn_end end)
{
	c->end = (uint8_t)end;
	conn_enter(c, CONN_FLUSH);
}

/* ---- backend connect ---- */

static void connect_next(struct conn *c)
{
	const struct conn_env *env = c->env;
	const struct cfg_addr *a;
	int one = 1;

	a = backend_server(c->backend, c->first_server, c->attempt);
	if (!a) {
		c->server = NULL;
		conn_report(c, CONN_END_BACKEND_UNREACHABLE, NULL);
		if (c->tls.ssl) {
			SSL_shutdown(c->tls.ssl); /* close_notify: a clean close for the client */
			flush_then_close(c, CONN_END_CLOSED);
			pump(c);
		} else {
			conn_close(c, CONN_END_BACKEND_UNREACHABLE);
		}
		return;
	}
	c->server = a;
	c->bfd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (c->bfd < 0) {
		log_err("listener %s: socket for backend %s: %s", c->l->cfg->name, a->text,
			strerror(errno));
		conn_close(c, CONN_END_BACKEND_SOCKET);
		return;
	}
	setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->connect_ts.tv_sec = c->l->cfg->timeouts.connect_ms / 1000;
	c->connect_ts.tv_nsec = (long long)(c->l->cfg->timeouts.connect_ms % 1000) * 1000000;
	env->io->connect(env->io_ctx, c->bfd, (const struct sockaddr *)&a->ss, a->len,
			 &c->connect_ts, conn_ud(c, OP_CONNECT), conn_ud(c, OP_LINKTO));
	c->inflight |= 1u << OP_CONNECT | 1u << OP_LINKTO;
	c->attempt++;
}

/* The PROXY header goes first to the backend: it is put at the front of the buffer of bytes for
 * the backend, which the tiers send before anything else. */
static int queue_proxy_header(struct conn *c)
{
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	struct proxyproto_info info = { .src = &c->peer, .dst = &local, .tls = c->tls.ssl != NULL };
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	char alpn_buf[256], cn[256];
	unsigned char hdr[PROXYPROTO_MAX];
	struct buf *b = c->b_tx;
	int n;

	if (getsockname(c->cfd, (struct sockaddr *)&local, &llen) < 0)
		memset(&local, 0, sizeof(local));
	if (c->tls.ssl) {
		SSL_get0_alpn_selected(c->tls.ssl, &alpn, &alpn_len);
		if (alpn_len) {
			snprintf(alpn_buf, sizeof(alpn_buf), "%.*s", (int)alpn_len, alpn);
			info.alpn = alpn_buf;
		}
		info.sni = SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name);
		/* No authority TLV rather than bytes a backend may misread. */
		if (info.sni && !hostname_plain(info.sni, strlen(info.sni)))
			info.sni = NULL;
		info.version = SSL_get_version(c->tls.ssl);
		info.cipher = SSL_get_cipher_name(c->tls.ssl);
		if (mtls_peer_cn(c->tls.ssl, cn, sizeof(cn)) == 0) {
			info.client_cn = cn;
			info.client_cert_verified = SSL_get_verify_result(c->tls.ssl) == X509_V_OK;
		}
	}
	if (c->l->cfg->protocol == CFG_PROTO_PASSTHROUGH)
		info.sni = c->acct.sni && hostname_plain(c->acct.sni, strlen(c->acct.sni))
			       ? c->acct.sni
			       : NULL;
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
	conn_enter(c, CONN_TIER_SELECT); /* tier_choose() on the next pump */
	c->dp = NULL;
	c->active_ms = c->env->now_ms;
}

/* The backend handshake failed (why names the reason) or timed out: one log line, a count, and
 * a clean close for the client (close_notify, then FIN). */
static void backend_tls_failed(struct conn *c, const char *why, enum stats_btls kind)
{
	if (c->state != CONN_BACKEND_TLS)
		return; /* already failing: one line, one count */
	conn_report(c, CONN_END_BACKEND_TLS, why);
	stats_backend_tls_failed(c->l->stats, kind);
	SSL_shutdown(c->tls.ssl);
	ERR_clear_error();
	flush_then_close(c, CONN_END_CLOSED);
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
		c->b_tx = &c->btls.out;
	if (c->l->cfg->proxy_protocol != CFG_PROXY_OFF && queue_proxy_header(c) < 0) {
		conn_close(c, CONN_END_PROXY_HEADER);
		return;
	}
	if (!c->l->bctx) {
		start_forwarding(c);
		return;
	}
	if (backend_tls_start(c, c->l->bctx) < 0) {
		conn_close(c, CONN_END_NO_MEMORY);
		return;
	}
	conn_enter(c, CONN_BACKEND_TLS);
	c->btls.start_ms = c->env->now_ms;
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
	c->env->io->close(c->env->io_ctx, c->bfd);
	c->bfd = -1;
	connect_next(c);
}

static void start_connect(struct conn *c)
{
	conn_enter(c, CONN_CONNECTING);
	c->first_server = backend_first(c->backend);
	c->attempt = 0;
	connect_next(c);
}

/* ---- the client's side before forwarding ---- */

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
	int r = handshake_step(c, &why);

	if (hello_read(c->tls.ssl))
		c->flags |= CF_HELLO;
	if (r == 1) {
		admit_handshake_done(&c->limits);
		c->hs_ms = c->env->now_ms - c->start_ms;
		ack_now(c);
		if (handshake_client_done(c)) {
			/* Nothing to forward: answer the close_notify and close, no backend. */
			c->tier_note = "client closed before sending data: backend not connected";
			conn_report(c, CONN_END_OK, NULL);
			SSL_shutdown(c->tls.ssl);
			flush_then_close(c, CONN_END_CLOSED);
			return;
		}
		start_connect(c);
		return;
	}
	if (r < 0) {
		enum conn_end end =
		    r == -ECONNRESET ? CONN_END_CLIENT_GONE : CONN_END_HANDSHAKE_FAILED;

		conn_report(c, end, why);
		flush_then_close(c, end); /* the alert OpenSSL queued goes first */
		return;
	}
	conn_post_send(c, true);
	conn_post_recv(c, true);
}

static void pump_hello(struct conn *c)
{
	const char *why = NULL;
	int r = passthrough_step(c, &why);

	if (r == 1) {
		admit_handshake_done(&c->limits);
		c->hs_ms = c->env->now_ms - c->start_ms;
		start_connect(c);
	} else if (r < 0) {
		conn_report(c, CONN_END_HELLO_REFUSED, why);
		conn_close(c, CONN_END_HELLO_REFUSED);
	} else {
		conn_post_recv(c, true);
	}
}

static void pump(struct conn *c)
{
	switch ((enum conn_state)c->state) {
	case CONN_HANDSHAKE:
		pump_handshake(c);
		if (c->state == CONN_FLUSH)
			pump(c);
		break;
	case CONN_HELLO:
		pump_hello(c);
		break;
	case CONN_CONNECTING:
		/* Keep the handshake's last flight moving while the backend connects. */
		conn_post_send(c, true);
		break;
	case CONN_BACKEND_TLS:
		conn_post_send(c, true);
		pump_backend_handshake(c);
		break;
	case CONN_TIER_SELECT:
		tier_choose(c);
		break;
	case CONN_FORWARDING:
		c->dp->pump(c);
		break;
	case CONN_FLUSH:
		conn_post_send(c, true);
		if (!conn_busy(c, OP_CSEND))
			conn_close(c, c->end);
		break;
	case CONN_CLOSING:
	case CONN_STATE_N:
		break;
	}
}

/* ---- completions ---- */

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
		return; /* the userspace tier parked the connection and took the buffer back */
	if (res > 0) {
		c->flags &= (uint16_t)~CF_PARKED;
		vg_kernel_wrote(b->data + b->tail, (size_t)res);
		if (client && c->tls.ktls_candidate)
			record_feed(&c->tls.rx_rec, b->data + b->tail, (size_t)res);
		b->tail += (uint32_t)res;
		c->active_ms = c->env->now_ms;
		if (!conn_tls(
			c)) /* plain forwarding: payload is what arrives; TLS counts plaintext */
			*(client ? &c->bytes_c2b : &c->bytes_b2c) += (uint64_t)res;
	} else if (res == 0) {
		c->flags |= client ? CF_CIN_EOF : CF_BIN_EOF;
	} else if (!client && c->state == CONN_BACKEND_TLS) {
		backend_tls_failed(c,
				   res == -ECONNRESET ? "backend TLS handshake failed: the backend "
							"reset the connection"
						      : "backend TLS handshake failed: recv error",
				   STATS_BTLS_HANDSHAKE);
	} else if (res == -ECANCELED &&
		   (c->state == CONN_FORWARDING || c->state == CONN_TIER_SELECT)) {
		/* a tier took the socket over (dp_sockmap, the kTLS handoff) */
	} else if (!client && c->state == CONN_FLUSH) {
		/* only the client's last records matter now */
	} else if (c->state != CONN_CLOSING) {
		conn_close(
		    c, client
			   ? (res == -ECONNRESET ? CONN_END_CLIENT_RESET : CONN_END_CLIENT_RECV)
			   : (res == -ECONNRESET ? CONN_END_BACKEND_RESET : CONN_END_BACKEND_RECV));
	}
}

static void on_send(struct conn *c, bool client, int res)
{
	struct buf *b = client ? c->c_tx : c->b_tx;

	b->pins--;
	if (res > 0) {
		buf_consume(b, (uint32_t)res);
		c->active_ms = c->env->now_ms;
	} else if (!client && c->state == CONN_BACKEND_TLS) {
		backend_tls_failed(c, "backend TLS handshake failed: send error",
				   STATS_BTLS_HANDSHAKE);
	} else if (!client && c->state == CONN_FLUSH) {
		/* only the client's last records matter now */
	} else if (c->state != CONN_CLOSING) {
		bool reset = res == -ECONNRESET || res == -EPIPE;

		conn_close(c, client ? (reset ? CONN_END_CLIENT_RESET : CONN_END_CLIENT_SEND)
				     : (reset ? CONN_END_BACKEND_RESET : CONN_END_BACKEND_SEND));
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
	if (c->state == CONN_CLOSING) {
		conn_settle(c);
		return;
	}
	if ((op == OP_CONNECT || op == OP_LINKTO) && c->state == CONN_CONNECTING &&
	    !conn_busy(c, OP_CONNECT) && !conn_busy(c, OP_LINKTO))
		connect_done(c);
	pump(c);
	conn_settle(c);
}

/* Every state has a deadline (docs/security.md): a connection sending its last records (an
 * alert, a close_notify) has close_ms to get them out, whatever the client's window; one that has
 * not sent its whole ClientHello has client_hello_ms from accept (passthrough: its whole HELLO
 * state), one in its handshake handshake_ms; connecting has the connect timeout of each server
 * and, with backend TLS, connect_ms for that handshake; forwarding has idle_ms. */
void conn_check_timeout(struct conn *c, uint64_t now_ms)
{
	const struct cfg_listener *l = c->l->cfg;
	const uint64_t hello_ms = MIN(l->timeouts.client_hello_ms, l->timeouts.handshake_ms);

	switch ((enum conn_state)c->state) {
	case CONN_FLUSH:
		if (!c->flush_ms)
			c->flush_ms = now_ms;
		if (now_ms - c->flush_ms >= l->timeouts.close_ms)
			conn_close(c, CONN_END_CLOSE_TIMEOUT);
		break;
	case CONN_HANDSHAKE:
	case CONN_HELLO:
		if (!(c->flags & CF_HELLO) && now_ms - c->start_ms >= hello_ms)
			conn_close(c, CONN_END_HELLO_TIMEOUT);
		else if (now_ms - c->start_ms >= l->timeouts.handshake_ms)
			conn_close(c, CONN_END_HANDSHAKE_TIMEOUT);
		break;
	case CONN_BACKEND_TLS:
		if (now_ms - c->btls.start_ms >= l->timeouts.connect_ms)
			backend_tls_failed(c, "backend TLS handshake timed out",
					   STATS_BTLS_TIMEOUT);
		break;
	case CONN_FORWARDING:
		if (c->dp->tick)
			c->dp->tick(c);
		if (c->state != CONN_FORWARDING)
			break;
		if (now_ms - c->active_ms >= l->timeouts.idle_ms)
			conn_close(c, CONN_END_IDLE_TIMEOUT);
		else if (now_ms - c->active_ms >= PARK_MS && c->dp->idle)
			c->dp->idle(c);
		break;
	case CONN_TIER_SELECT:
		if (now_ms - c->active_ms >= l->timeouts.idle_ms)
			conn_close(c, CONN_END_IDLE_TIMEOUT);
		break;
	case CONN_CONNECTING:
	case CONN_CLOSING:
	case CONN_STATE_N:
		break;
	}
	conn_settle(c);
}

int conn_accept(struct conn_env *env, struct state *st, struct listener_rt *l, int fd,
		const struct sockaddr_storage *peer, struct admit_hold *hold)
{
	struct conn *c = aligned_alloc(16, sizeof(*c));

	if (!c) {
		env->io->close(env->io_ctx, fd);
		atomic_fetch_sub(&l->conns, 1);
		return -ENOMEM;
	}
	memset(c, 0, sizeof(*c));
	c->env = env;
	c->l = l;
	c->st = state_get(st);
	c->cfd = fd;
	c->bfd = -1;
	c->start_ms = c->active_ms = env->now_ms;
	c->cin.cap = CIN_CAP;
	c->cout.cap = COUT_CAP;
	c->bin.cap = BIN_CAP;
	c->bout.cap = BOUT_CAP;
	c->btls.in.cap = BIN_CAP;
	c->btls.out.cap = COUT_CAP;
	c->backend = l->backend;
	c->peer = *peer;
	c->limits = *hold;
	*hold = (struct admit_hold){ 0 };
	addr_text(&c->peer, c->peer_text, sizeof(c->peer_text));
	conn_list_add(env, c);
	if (l->cfg->protocol == CFG_PROTO_TLS) {
		c->tls.ktls_candidate = datapath_ktls_allowed(l->cfg);
		c->c_tx = &c->cout;
		c->b_tx = &c->bout;
		c->state = CONN_HANDSHAKE;
		if (handshake_start(c, l->ctx) < 0)
			conn_close(c, CONN_END_NO_MEMORY);
		else
			pump(c);
	} else {
		c->c_tx = &c->bin;
		c->b_tx = &c->cin;
		if (l->cfg->protocol == CFG_PROTO_PASSTHROUGH) {
			c->state = CONN_HELLO; /* read the ClientHello, then connect */
			pump(c);
		} else {
			c->state = CONN_HELLO; /* nothing to read first: straight to connecting */
			start_connect(c);
		}
	}
	conn_settle(c);
	return 0;
}
