/* state — everything the daemon serves with, built from one config snapshot: per-listener TLS
 * contexts, policies, backend pools. Built and validated whole before it is used; connections
 * hold a reference to the state they started under, so a reload never pulls it from under them. */
#ifndef KTLSD_STATE_H
#define KTLSD_STATE_H

#include <stdatomic.h>

#include <openssl/ssl.h>

#include "backend.h"
#include "config.h"
#include "policy.h"
#include "stats.h"

struct listener_rt {
	const struct cfg_listener *cfg;
	size_t index;
	SSL_CTX *ctx;  /* tls listeners only */
	SSL_CTX *bctx; /* backend_tls enabled only: the client context towards backends */
	struct policy *policy;
	struct backend_rt *backend;
	struct stats_listener *stats; /* counters by name: shared with other states, never freed */
	atomic_uint conns;	      /* live connections of this state on all workers */
};

struct state {
	atomic_int refs;
	struct config *cfg;
	struct listener_rt *listeners;
	struct backend_rt *backends;
};

/* Takes a reference on cfg. On failure every problem is in errs, each naming file and JSON path. */
int state_build(struct config *cfg, struct state **out, struct cfg_errors *errs) __must_check;
struct state *state_get(struct state *s);
void state_put(struct state *s); /* accepts NULL */

#endif
