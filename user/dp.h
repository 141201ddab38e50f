/* dp — the datapath tiers' interface: what moves a connection's bytes once its handshake is done
 * and its backend connected (docs/architecture.md, "Tiers"). A tier is one ops table; a
 * connection on it points at that table (c->dp) and at the tier's own state (c->dp_data). The
 * tiers are numbered once, enum ktlsd_tier (include/ktlsd_bpf.h), for the config, the statistics
 * and the BPF conns map; the choice among them is made in one place, tier.c. */
#ifndef KTLSD_DP_H
#define KTLSD_DP_H

#include "ktlsd_bpf.h"

struct conn;

struct dp_ops {
	enum ktlsd_tier id;
	const char *name; /* as in the config's datapath field and the metrics' tier label */
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
