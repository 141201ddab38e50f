/* conn — one client connection and its state machine:
 *
 *   ACCEPTED → HANDSHAKE → CONNECTING → FORWARDING(tier) → CLOSING
 *
 * A connection lives on the worker that accepted it and is touched by that worker's thread only.
 * Every kernel operation it has in flight is a bit in inflight; it is freed once it is CLOSING and
 * no operation remains, so no completion ever finds freed memory. */
#ifndef KTLSD_CONN_H
#define KTLSD_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <linux/time_types.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "admit.h"
#include "record.h"

struct worker;
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

enum conn_phase { CONN_HANDSHAKE, CONN_CONNECTING, CONN_FORWARDING, CONN_CLOSING };

enum conn_flag {
	CF_CIN_EOF = 1 << 0,	     /* client sent FIN */
	CF_BIN_EOF = 1 << 1,	     /* backend sent FIN */
	CF_C_DONE = 1 << 2,	     /* client's direction fully decoded (close_notify or FIN) */
	CF_B_SHUT = 1 << 3,	     /* backend socket shut for writing */
	CF_C_NOTIFY = 1 << 4,	     /* close_notify queued for the client */
	CF_C_SHUT = 1 << 5,	     /* client socket shut for writing */
	CF_FLUSH_CLOSE = 1 << 6,     /* send what cout holds (an alert), then close */
	CF_LOGGED = 1 << 7,	     /* the handshake line is written */
	CF_B_DONE = 1 << 8,	     /* backend TLS: the backend's direction fully decoded */
	CF_B_NOTIFY = 1 << 9,	     /* backend TLS: close_notify queued for the backend */
	CF_PARKED = 1 << 10,	     /* idle: buffers released, sockets watched by polls (conn.c) */
	CF_CPOLL = 1 << 11,	     /* OP_CRECV is a poll for readability, not a recv */
	CF_BPOLL = 1 << 12,	     /* OP_BRECV likewise */
	CF_HANDOFF_CANCEL = 1 << 13, /* handoff_try cancelled the client recv in flight */
	CF_HELLO = 1 << 14,	     /* the client's whole ClientHello has been read */
};

struct dp_ops;

struct conn {
	struct conn *prev, *next; /* worker's list, for timeouts and drain */
	struct worker *w;
	struct listener_rt *l;
	struct state *st; /* reference held while the connection lives */
	const struct dp_ops *dp;
	SSL *ssl; /* NULL for tcp listeners, and after a kernel or record layer handoff */
	/* ktlsd's record layer (rlayer.h, conn_rl.h): the client side once the SSL is freed on the
	 * userspace tier; the records it owes the client, warning alerts, empty records and
	 * KeyUpdates in a row (conn_rl.c caps each), renegotiation attempts seen. */
	struct rlayer *rl;
	uint8_t rl_pending, rl_warnings, rl_empty, rl_updates, renegs;
	int cfd, bfd;
	uint8_t phase;
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
	/* Backend TLS (backend_tls.h): the backend's SSL and its records each way; bin and bout
	 * then hold the plaintext, b_tx is bcout. */
	SSL *bssl;
	struct buf bcin, bcout;
	uint64_t bhs_start_ms;
	void *dp_data; /* the tier's own state, freed by its release() */
	/* Kernel handoff bookkeeping (see record.h): the client's stream, read record by record
	 * while keys may go to the kernel, and ours, for the last TLS 1.2 explicit nonce. */
	struct record_track rx_rec, tx_rec;
	/* What the client's SSL consumed from cin: a record boundary is where rlayer can go on. */
	struct record_track ssl_rx;
	bool ktls_candidate;
	const char *tier_note; /* why a connection stayed in userspace, for the log */
	struct __kernel_timespec connect_ts;
	uint64_t start_ms, active_ms, hs_ms;
	uint64_t flush_ms; /* when the worker's tick first saw CF_FLUSH_CLOSE; 0 = not yet */
	uint64_t bytes_c2b, bytes_b2c; /* payload bytes each way */
	struct sockaddr_storage peer;
	char peer_text[64];
	const char *reason; /* why it closed, for the log */
	/* For `ktlsctl connections` and the metrics (stats_conn.c), set when the handshake is
	 * logged: the SNI (copied, freed by stats_conn_freed), OpenSSL's static version and
	 * cipher names, the tier reached (enum stats_tier) and the bytes already counted. */
	char *sni;
	const char *version, *cipher;
	uint64_t acct_c2b, acct_b2c;
	uint8_t tier;
	bool bpf_want;			 /* its conns entry is due at the next tick (conn_bpf.h) */
	uint16_t tls_version, cipher_id; /* for that entry: the SSL may be gone by then */
	uint64_t cookie; /* client socket cookie: its conns map key (conn_bpf.h); 0 = no entry */
	struct admit_hold limits; /* released as the handshake ends and at free */
} __attribute__((aligned(16)));

/* A datapath tier: what moves bytes once the handshake is done and the backend is connected. */
struct dp_ops {
	const char *name;
	/* Moves bytes as far as buffers and sockets allow; posts the operations it needs. */
	void (*pump)(struct conn *c);
	/* Completion of OP_DP1…OP_DP4. */
	void (*complete)(struct conn *c, unsigned op, int res);
	/* Frees what the tier holds; called once, when the connection is freed. */
	void (*release)(struct conn *c);
	/* Optional: the worker's tick (every 100 ms), before the idle timeout is checked. */
	void (*tick)(struct conn *c);
};

/* Takes a just-accepted socket from peer, and what admit_connection granted it (*hold is emptied:
 * the connection releases it). Returns 0, or a negative errno after closing fd (the caller then
 * still owns *hold). */
int conn_accept(struct worker *w, struct listener_rt *l, int fd,
		const struct sockaddr_storage *peer, struct admit_hold *hold)
    __attribute__((warn_unused_result));
/* Dispatches a completion of an operation tagged for c. */
void conn_complete(struct conn *c, unsigned op, int res);
/* Starts closing: cancels what is in flight. The connection is freed when nothing remains in
 * flight, at the end of the completion being handled, so callers may still touch c after this.
 * reason NULL = a clean end. Tiers call this. */
void conn_close(struct conn *c, const char *reason);
/* Closes once what cout holds has reached the client (an alert a TLS error queued there), or
 * when timeouts.close_ms passes first; the client gets nothing more. For tiers. */
void conn_close_after_flush(struct conn *c, const char *reason);
/* conn_close, then free at once if nothing is in flight: for callers outside a completion. */
void conn_abort(struct conn *c, const char *reason);
/* Called by the worker's timer: closes connections past their handshake or idle deadline. */
void conn_check_timeout(struct conn *c, uint64_t now_ms);
/* Called by the worker's timer after conn_check_timeout has seen every connection: returns the
 * memory of connections parked since the previous tick to the kernel. */
void conn_tick_done(void);

/* True when the client side speaks TLS, through OpenSSL or through ktlsd's record layer. */
static inline bool conn_tls(const struct conn *c)
{
	return c->ssl || c->rl;
}

/* The buffer the backend socket is read into: bcin with backend TLS, else bin. */
static inline struct buf *conn_brx(struct conn *c)
{
	return c->bssl ? &c->bcin : &c->bin;
}

/* Helpers for tiers: post a recv/send on one side if none is in flight and there is room/data. */
void conn_post_recv(struct conn *c, bool client);
void conn_post_send(struct conn *c, bool client);
/* Shuts a side for writing once (propagates a half-close). */
void conn_shutdown_wr(struct conn *c, bool client);
/* True when both directions are finished; the tier then calls conn_close(c, NULL). */
static inline bool conn_both_done(const struct conn *c)
{
	return (c->flags & (CF_B_SHUT | CF_C_SHUT)) == (CF_B_SHUT | CF_C_SHUT);
}

extern const struct dp_ops dp_userspace;
extern const struct dp_ops dp_splice;
/* Creates the ktls-splice pipes for c; 0 or -errno (c stays on its current tier). */
int dp_splice_attach(struct conn *c) __attribute__((warn_unused_result));
extern const struct dp_ops dp_sockmap;
/* Prepares the sockmap tier for c (tcp, tls-passthrough): 0 or -errno (c stays in userspace). */
int dp_sockmap_attach(struct conn *c) __attribute__((warn_unused_result));
/* The worker's backlog check (OP_SOCKMAP), every SOCKMAP_CHECK_MS while its sockmap connections
 * have bytes on their way: reads them and resets the largest while limits.sockmap_backlog is
 * exceeded (dp_sockmap.c). */
void dp_sockmap_check(struct worker *w);
/* Bytes on their way inside the kernel over every sockmap connection (for the metrics). */
uint64_t dp_sockmap_backlog(void);

#endif
