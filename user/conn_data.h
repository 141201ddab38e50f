/* conn_data — one client connection's data: struct conn, its states, flags and operation tags,
 * the environment its worker gives it, and accessors with no behaviour. What acts on a
 * connection is in conn.h (the primitives), conn_fsm.h (its state machine) and dp.h (its tiers);
 * modules that only read a connection (its log lines, its statistics, its BPF entry) include
 * this header alone.
 *
 * A connection lives on the worker that accepted it and is touched by that worker's thread only.
 * Every kernel operation it has in flight (through the I/O seam, conn_io.h) is a bit in inflight;
 * it is freed once it is CLOSING and no operation remains, so no completion ever finds freed
 * memory. */
#ifndef KTLSD_CONN_DATA_H
#define KTLSD_CONN_DATA_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <linux/time_types.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "admit.h"
#include "conn_io.h"
#include "dp.h"
#include "record.h"
#include "ring.h"

struct sockmap_state;
struct listener_rt;
struct state;
struct backend_rt;

/* Operation tags carried in io_uring user_data (see ring.h); 0 means "ignore". */
enum op {
	OP_NONE,
	OP_CRECV,   /* client socket → cin */
	OP_CSEND,   /* c_tx → client socket */
	OP_BRECV,   /* backend socket → bin */
	OP_BSEND,   /* b_tx → backend socket */
	OP_CONNECT, /* backend connect */
	OP_LINKTO,  /* its linked timeout */
	OP_DP1,	    /* four operations a datapath tier may use for itself */
	OP_DP2,
	OP_DP3,
	OP_DP4,
	OP_ACCEPT, /* worker-level operations */
	OP_TICK,
	OP_WAKE,
	OP_SOCKMAP, /* the sockmap tier's backlog check (dp_sockmap_check) */
};

/* The lifecycle (docs/architecture.md, "States"). A connection is in exactly one state, entered
 * only through conn_enter(), which checks the transition against conn.c's table:
 *
 *   HANDSHAKE ─┬─► CONNECTING ─┬─► TIER_SELECT ─► FORWARDING ─┐
 *   HELLO ─────┤   ▲           └─► BACKEND_TLS ─► TIER_SELECT  ├─► CLOSING
 *   (tcp) ─────┼───┘                                           │
 *              └─► FLUSH (an alert or close_notify to send) ───┘
 *
 * FLUSH is reachable from every state before CLOSING; CLOSING from every state. */
enum conn_state {
	CONN_HANDSHAKE,	  /* TLS: OpenSSL runs the client's handshake */
	CONN_HELLO,	  /* tls-passthrough: reading the ClientHello to route it */
	CONN_CONNECTING,  /* TCP connect to a backend server, with retries */
	CONN_BACKEND_TLS, /* the handshake with the backend (backend_tls.h) */
	CONN_TIER_SELECT, /* both sides ready; the tier is being chosen (tier.h) */
	CONN_FORWARDING,  /* c->dp moves the bytes */
	CONN_FLUSH,	  /* sending what cout holds (an alert, a close_notify), then CLOSING */
	CONN_CLOSING,	  /* cancelling what is in flight; freed when nothing remains */
	CONN_STATE_N
};

enum conn_flag {
	CF_CIN_EOF = 1 << 0,  /* client sent FIN */
	CF_BIN_EOF = 1 << 1,  /* backend sent FIN */
	CF_C_DONE = 1 << 2,   /* client's direction fully decoded (close_notify or FIN) */
	CF_B_SHUT = 1 << 3,   /* backend socket shut for writing */
	CF_C_NOTIFY = 1 << 4, /* close_notify queued for the client */
	CF_C_SHUT = 1 << 5,   /* client socket shut for writing */
	CF_LOGGED = 1 << 7,   /* the handshake line is written (conn_report) */
	CF_B_DONE = 1 << 8,   /* backend TLS: the backend's direction fully decoded */
	CF_B_NOTIFY = 1 << 9, /* backend TLS: close_notify queued for the backend */
	CF_PARKED = 1 << 10,  /* idle: buffers released, sockets watched by polls (dp_userspace) */
	CF_CPOLL = 1 << 11,   /* OP_CRECV is a poll for readability, not a recv */
	CF_BPOLL = 1 << 12,   /* OP_BRECV likewise */
	CF_HANDOFF_CANCEL = 1 << 13, /* handoff_prepare cancelled the client recv in flight */
	CF_HELLO = 1 << 14,	     /* the client's whole ClientHello has been read */
};

/* What a connection sees of the worker that owns it (struct worker embeds one): the I/O seam,
 * the worker's clock and its list of connections. */
struct conn_env {
	const struct conn_io *io;
	void *io_ctx;
	uint64_t now_ms;    /* CLOCK_MONOTONIC_COARSE, read once per wake-up */
	unsigned id;	    /* the worker's */
	struct conn *conns; /* doubly linked list head, for timeouts and drain */
	unsigned n_conns;
	/* dp_sockmap.c: connections read every SOCKMAP_CHECK_MS (bytes on their way at the last
	 * reading, or moving), and that check's timer */
	struct sockmap_state *sockmap_hot;
	struct __kernel_timespec sockmap_ts;
	bool sockmap_armed;
} __attribute__((aligned(16)));

/* The client's TLS: OpenSSL's SSL through the handshake, ktlsd's record layer after it on the
 * userspace tier, neither on the kernel's (handshake.h, conn_rl.h, handoff.h). */
struct conn_tls {
	SSL *ssl; /* NULL for tcp listeners, and after a kernel or record layer handoff */
	/* ktlsd's record layer (rlayer.h, conn_rl.h): the records it owes the client, warning
	 * alerts, empty records and KeyUpdates in a row (conn_rl.c caps each), renegotiation
	 * attempts seen (conn_log_renegotiation). */
	struct rlayer *rl;
	uint8_t rl_pending, rl_warnings, rl_empty, rl_updates, renegs;
	/* Kernel handoff bookkeeping (see record.h): the client's stream, read record by record
	 * while keys may go to the kernel, and ours, for the last TLS 1.2 explicit nonce. */
	struct record_track rx_rec, tx_rec;
	/* What the client's SSL consumed from cin: a record boundary is where rlayer can go on. */
	struct record_track ssl_rx;
	bool ktls_candidate;
};

/* TLS towards the backend (backend_tls.h): the backend's SSL and its records each way; bin and
 * bout then hold the plaintext, b_tx is &out. */
struct conn_btls {
	SSL *ssl;
	struct buf in, out;
	uint64_t start_ms; /* when its handshake began (connect_ms bounds it) */
};

/* What the statistics (stats_conn.h) and the BPF conns entry (conn_bpf.h) keep of a connection,
 * set when its handshake is reported, for `ktlsctl connections` and the metrics: the SNI
 * (copied, freed by stats_conn_freed), OpenSSL's static version and cipher names, the bytes
 * already counted, the tier reached. */
struct conn_acct {
	char *sni;
	const char *version, *cipher;
	uint64_t c2b, b2c;
	uint8_t tier;			 /* enum ktlsd_tier */
	bool bpf_want;			 /* its conns entry is due at the next tick (conn_bpf.h) */
	uint8_t bpf_state;		 /* the enum ktlsd_state that entry has */
	uint16_t tls_version, cipher_id; /* for that entry: the SSL may be gone by then */
	uint64_t cookie; /* client socket cookie: its conns map key (conn_bpf.h); 0 = no entry */
};

struct conn {
	struct conn *prev, *next; /* env->conns */
	struct conn_env *env;
	struct listener_rt *l;
	struct state *st; /* reference held while the connection lives */
	const struct dp_ops *dp;
	struct conn_tls tls;
	int cfd, bfd;
	uint8_t state;	   /* enum conn_state */
	uint8_t attempt;   /* backend server tries so far */
	uint16_t inflight; /* 1 << enum op */
	uint16_t flags;
	int connect_res;
	size_t first_server;
	const struct cfg_addr *server;
	struct backend_rt *backend; /* the listener's, or the one a passthrough route chose */
	uint8_t route;		    /* passthrough: enum route_match + 1, 0 before routing */
	struct buf cin, cout, bin, bout;
	struct buf *c_tx,
	    *b_tx; /* what is sent to each side: cout/bout with TLS, bin/cin without */
	struct conn_btls btls;
	void *dp_data;	       /* the tier's own state, freed by its release() */
	const char *tier_note; /* why a connection stayed in userspace, for the log */
	struct __kernel_timespec connect_ts;
	uint64_t start_ms, active_ms, hs_ms;
	uint64_t flush_ms; /* when the worker's tick first saw CONN_FLUSH; 0 = not yet */
	uint64_t bytes_c2b, bytes_b2c; /* payload bytes each way */
	struct sockaddr_storage peer;
	char peer_text[64];
	uint8_t end; /* enum conn_end: why it closed (or will, after FLUSH) */
	struct conn_acct acct;
	struct admit_hold limits; /* released as the handshake ends and at free */
} __attribute__((aligned(16)));

static inline bool conn_busy(const struct conn *c, unsigned op)
{
	return c->inflight & (1u << op);
}

static inline uint64_t conn_ud(const struct conn *c, unsigned op)
{
	return ring_ud(c, op);
}

/* True when the client side speaks TLS, through OpenSSL or through ktlsd's record layer. */
static inline bool conn_tls(const struct conn *c)
{
	return c->tls.ssl || c->tls.rl;
}

/* The buffer the backend socket is read into: btls.in with backend TLS, else bin. */
static inline struct buf *conn_brx(struct conn *c)
{
	return c->btls.ssl ? &c->btls.in : &c->bin;
}

/* True when both directions are finished; the tier then calls conn_close(c, NULL). */
static inline bool conn_both_done(const struct conn *c)
{
	return (c->flags & (CF_B_SHUT | CF_C_SHUT)) == (CF_B_SHUT | CF_C_SHUT);
}

#endif
