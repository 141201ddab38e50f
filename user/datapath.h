/* datapath — which tiers the running kernel and this build support, decided once at startup, and
 * the check that a listener's forced "datapath" is one of them (a forced tier the kernel lacks is
 * a startup error, never a silent fallback). */
#ifndef KTLSD_DATAPATH_H
#define KTLSD_DATAPATH_H

#include <stdbool.h>

#include "config.h"
#include "ktls.h"

struct datapath_caps {
	bool tier[CFG_DP_SOCKMAP + 1];	   /* indexed by enum cfg_datapath */
	char why[CFG_DP_SOCKMAP + 1][160]; /* why a tier is unavailable */
	unsigned ktls_ciphers;		   /* 1 << enum ktls_cipher the kernel accepted */
};

/* Probes the kernel (TCP_ULP "tls" on a loopback socket; the BPF programs, loaded and
 * relaying a loopback connection through the sockhash), fills caps and keeps a copy for
 * datapath_ktls_allowed(). Called once at startup, before any worker runs. */
void datapath_probe(struct datapath_caps *caps);
/* Test hook (tests/unit/test_conn.c): what later calls answer from, as if the probe had found
 * caps. The daemon never calls it. */
void datapath_set_caps(const struct datapath_caps *caps);
/* True when the startup probe installed this cipher in the kernel's TLS. */
bool datapath_ktls_cipher_ok(enum ktls_cipher c);
/* True when connections of this listener may be handed to kernel TLS (kernel support and the
 * listener's "datapath" both allow it). */
bool datapath_ktls_allowed(const struct cfg_listener *l);
/* True when connections of this listener (tcp or tls-passthrough) go to the sockmap tier. */
bool datapath_sockmap_allowed(const struct cfg_listener *l);
/* Adds an error for every listener whose forced tier is unavailable. */
void datapath_check(const struct config *cfg, const struct datapath_caps *caps,
		    struct cfg_errors *errs);

#endif
