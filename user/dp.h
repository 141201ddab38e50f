/* dp — the datapath tiers' interface: what moves a connection's bytes once its handshake is done
 * and its backend connected (docs/architecture.md, "Tiers"). A tier is one ops table; a
 * connection on it points at that table (c->dp) and at the tier's own state (c->dp_data). The
 * tiers are numbered once, enum ktlsd_tier (include/ktlsd_bpf.h), for the config, the statistics
 * and the BPF conns map; the choice among them is made in one place, tier.c, in the order of
 * its candidate list. */
#ifndef KTLSD_DP_H
#define KTLSD_DP_H

#include "ktlsd_bpf.h"

struct conn;

/* What a tier's attach made of a connection in CONN_TIER_SELECT. */
enum dp_attach {
	DP_ATTACHED, /* it forwards on this tier from now on */
	DP_WAIT,     /* not yet (bytes still leaving, a receive being cancelled): again next pump */
	DP_DECLINED, /* not on this tier (c->tier_note may say why): the next candidate's turn */
	DP_CLOSED,   /* it failed half-way: the connection is closing */
};

struct dp_ops {
	enum ktlsd_tier id;
	const char *name; /* as in the config's datapath field and the metrics' tier label */
	/* Takes c if this listener, the startup probe and c's session allow it (tier.c tries the
	 * tiers fastest first). */
	enum dp_attach (*attach)(struct conn *c);
	/* Optional: once c is attached and its handshake line written (which still reads the
	 * SSL), frees what the tier no longer needs of userspace TLS. */
	void (*start)(struct conn *c);
	/* Moves bytes as far as buffers and sockets allow; posts the operations it needs. */
	void (*pump)(struct conn *c);
	/* Completion of OP_DP1…OP_DP4. */
	void (*complete)(struct conn *c, unsigned op, int res);
	/* Frees what the tier holds; called once, when the connection is freed or leaves the
	 * tier. */
	void (*release)(struct conn *c);
	/* Optional: the worker's tick (every 100 ms), before the idle timeout is checked. */
	void (*tick)(struct conn *c);
	/* Optional: the connection has been idle for PARK_MS (conn_fsm.c): give memory back. */
	void (*idle)(struct conn *c);
};

#endif
