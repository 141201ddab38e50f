/* stats — the daemon's counters, kept by listener name so they survive reloads: a listener that a
 * reload keeps, removes or adds back finds its counters where it left them.
 *
 * Workers update them with relaxed atomics (no locks, no ordering: readers want totals, not a
 * consistent cut). The registry itself takes a mutex, but only when a state is built or a reader
 * walks it, never on the connection path. Entries are never freed while the daemon runs, so a
 * pointer to one stays valid for as long as any connection or state holds it. */
#ifndef KTLSD_STATS_H
#define KTLSD_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* The tier a connection forwards on (enum ktlsd_tier); NONE until its handshake and backend
 * connect are done, and for connections that never get that far. */
#include "ktlsd_bpf.h"

/* How a TLS handshake ended. */
enum stats_hs {
	STATS_HS_OK,	  /* completed */
	STATS_HS_FAILED,  /* a TLS error: an alert, no shared cipher, a bad certificate */
	STATS_HS_TIMEOUT, /* timeouts.handshake_ms passed */
	STATS_HS_ABORTED, /* the client went away, or ktlsd shut down, before it completed */
	STATS_HS_N,
};

/* Why a connection was refused at accept. */
enum stats_limit {
	STATS_LIMIT_MAX_CONNECTIONS,	/* listeners[].max_connections */
	STATS_LIMIT_OPEN_FILES,		/* accept failed with EMFILE/ENFILE */
	STATS_LIMIT_MEMORY,		/* no memory for the connection */
	STATS_LIMIT_TOTAL_CONNECTIONS,	/* limits.max_connections (all listeners) */
	STATS_LIMIT_HANDSHAKES,		/* limits.max_handshakes in progress */
	STATS_LIMIT_SOURCE_RATE,	/* limits.per_source.rate */
	STATS_LIMIT_SOURCE_HANDSHAKES,	/* limits.per_source.max_handshakes */
	STATS_LIMIT_SOURCE_CONNECTIONS, /* limits.per_source.max_connections */
	STATS_LIMIT_N,
};

/* Why a TLS handshake towards a backend failed (backend_tls). */
enum stats_btls {
	STATS_BTLS_VERIFY,    /* the backend's chain or name was rejected */
	STATS_BTLS_HANDSHAKE, /* a TLS error, an alert, a backend not speaking TLS, or EOF */
	STATS_BTLS_TIMEOUT,   /* no finished handshake within timeouts.connect_ms */
	STATS_BTLS_N,
};

enum stats_reload { STATS_RELOAD_OK, STATS_RELOAD_FAILED, STATS_RELOAD_N };

/* Handshake latency buckets, upper bounds in microseconds (Prometheus "le", in seconds). */
#define STATS_HS_BUCKETS 14
extern const uint64_t stats_hs_bucket_us[STATS_HS_BUCKETS]; /* the last is UINT64_MAX (+Inf) */

/* Distinct failure reasons kept per listener; later new ones are counted as "other". */
#define STATS_REASONS 32

typedef atomic_uint_least64_t stats_u64;

struct stats_reason {
	_Atomic(char *) name;
	stats_u64 n;
};

struct stats_listener {
	struct stats_listener *next; /* registry list, under the registry mutex */
	char *name;
	atomic_uint active; /* live connections, all tiers (for max_connections) */
	atomic_int_least64_t active_tier[KTLSD_TIER_N];
	stats_u64 total_tier[KTLSD_TIER_N]; /* by the tier they reached */
	stats_u64 handshakes[STATS_HS_N];
	stats_u64 hs_bucket[STATS_HS_BUCKETS]; /* completed handshakes, not cumulative */
	stats_u64 hs_sum_us;
	stats_u64 bytes_c2b, bytes_b2c; /* payload (plaintext) bytes */
	stats_u64 limit[STATS_LIMIT_N];
	stats_u64 backend_failures; /* connections closed because no backend server answered */
	stats_u64 backend_tls_failures[STATS_BTLS_N];
	stats_u64 resumed;		  /* completed handshakes that resumed a session */
	stats_u64 sockmap_backlog_resets; /* reset by the backlog guard (limits.sockmap_backlog) */
	struct stats_reason reasons[STATS_REASONS];
	stats_u64 reasons_other;
};

/* The entry for name, created on first use. Returns NULL only when out of memory. */
struct stats_listener *stats_listener_get(const char *name);
/* Calls fn for every entry, in creation order, under the registry mutex (fn must not call
 * stats_listener_get). */
void stats_for_each(void (*fn)(struct stats_listener *sl, void *arg), void *arg);
/* Frees the registry: only once nothing can touch it any more (exit, unit tests). */
void stats_exit(void);

/* Reserves a connection slot at accept: false (and a limit refusal counted) when max is reached.
 * Every true is matched by stats_conn_closed, or by stats_conn_unreserve if the connection could
 * not be set up. */
bool stats_conn_reserve(struct stats_listener *sl, unsigned max);
void stats_conn_unreserve(struct stats_listener *sl);
/* The connection started forwarding on tier t (from KTLSD_TIER_NONE); counted in total_tier. */
void stats_conn_tier(struct stats_listener *sl, enum ktlsd_tier t);
/* A forwarding connection left tier from for tier to (a fallback): the active gauges move. */
void stats_conn_moved(struct stats_listener *sl, enum ktlsd_tier from, enum ktlsd_tier to);
/* The connection, last on tier t, is gone. */
void stats_conn_closed(struct stats_listener *sl, enum ktlsd_tier t);
void stats_bytes(struct stats_listener *sl, uint64_t c2b, uint64_t b2c);
void stats_limit(struct stats_listener *sl, enum stats_limit l);
/* A handshake ended: latency_us counts for OK only; reason (NULL for OK) is a short, bounded
 * text such as OpenSSL's reason string ("no shared cipher"). */
void stats_handshake(struct stats_listener *sl, enum stats_hs r, uint64_t latency_us,
		     const char *reason);

void stats_backend_tls_failed(struct stats_listener *sl, enum stats_btls why);
void stats_sockmap_backlog_reset(struct stats_listener *sl);

void stats_reload(enum stats_reload r);
uint64_t stats_reloads(enum stats_reload r);

/* Read side: a relaxed load. */
static inline uint64_t stats_read(stats_u64 *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

const char *stats_tier_name(enum ktlsd_tier t); /* "none", "userspace", "ktls-splice", ... */
/* Tier by name (a filter of `ktlsctl connections`); KTLSD_TIER_NONE for NULL or an unknown name. */
enum ktlsd_tier stats_tier_by_name(const char *name);
const char *stats_hs_name(enum stats_hs r);	/* "ok", "failed", "timeout", "aborted" */
const char *stats_btls_name(enum stats_btls b); /* "verify", "handshake", "timeout" */
/* "max_connections", "open_files", "memory", "total_connections", "handshakes", "source_rate",
 * "source_handshakes", "source_connections" */
const char *stats_limit_name(enum stats_limit l);

#endif
