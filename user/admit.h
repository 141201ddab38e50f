/* admit — what keeps one client, or many, from taking the daemon down: connections over all
 * listeners (limits.max_connections), TLS handshakes in progress (limits.max_handshakes), and per
 * source address (an IPv4 /32 or an IPv6 /64) a token bucket of new connections and a cap on its
 * handshakes in progress and its open connections. listeners[].max_connections is checked by
 * stats_conn_reserve.
 *
 * Sources live in a fixed table (limits.per_source.table_size entries in sets of 4, keyed by a
 * hash with a secret chosen at startup), so no number of addresses can grow memory: a new source
 * takes the least recently seen entry of its set that holds no handshake. When every entry of the
 * set holds one, the new source goes untracked and only the global limits apply to it: the table
 * never refuses a client because it is full.
 *
 * Every refusal is counted in the listener's limit counters and logged through ratelog. Safe from
 * every worker at once. */
#ifndef KTLSD_ADMIT_H
#define KTLSD_ADMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "err.h"
#include "stats.h"

/* What one connection holds; zero-initialised means nothing. */
struct admit_hold {
	uint32_t src;	  /* source entry + 1 this holds a count of, 0 = none */
	uint64_t src_key; /* its key then: the entry is never reused while held, checked anyway */
	bool src_hs;	  /* one of the source's handshakes in progress */
	bool src_conn;	  /* one of the source's connections (per_source.max_connections) */
	bool conn;	  /* one of limits.max_connections */
	bool hs;	  /* one of limits.max_handshakes */
};

/* Allocates the source table (size from cfg, fixed until exit). 0 or -ENOMEM. */
int admit_init(const struct config *cfg) __must_check;
void admit_exit(void);

/* Admits a new connection from peer against cfg's limits (handshake: a TLS handshake starts now).
 * Returns STATS_LIMIT_N when admitted (h then holds what must be released), else the limit that
 * refused it (h holds nothing). */
enum stats_limit admit_connection(const struct config *cfg, const struct sockaddr_storage *peer,
				  bool handshake, uint64_t now_ms, struct admit_hold *h);
/* The handshake ended (done or failed): its global and per-source slots are free again. */
void admit_handshake_done(struct admit_hold *h);
/* The connection is gone: releases whatever h still holds. */
void admit_release(struct admit_hold *h);

/* Live counts, for metrics and tests. */
unsigned admit_connections(void);
unsigned admit_handshakes(void);
unsigned admit_sources_tracked(void);

/* Logs a refusal by listener because of l, at most once a second per limit, with the number of
 * refusals left out since the previous line. */
void admit_log_refusal(const char *listener, enum stats_limit l, uint64_t now_ms);

#endif
