#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

#define RELAXED memory_order_relaxed

const uint64_t stats_hs_bucket_us[STATS_HS_BUCKETS] = {
	1000,	2500,	5000,	 10000,	  25000,   50000,    100000,
	250000, 500000, 1000000, 2500000, 5000000, 10000000, UINT64_MAX,
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats_listener *registry_head, **registry_tail = &registry_head;
static stats_u64 reloads[STATS_RELOAD_N];

static const char *const tier_names[STATS_TIER_N] = {
	"none", "userspace", "ktls-splice", "ktls-sockmap", "sockmap",
};
static const char *const hs_names[STATS_HS_N] = { "ok", "failed", "timeout", "aborted" };
static const char *const limit_names[STATS_LIMIT_N] = {
	"max_connections",   "open_files",	   "memory",
	"total_connections", "handshakes",	   "source_rate",
	"source_handshakes", "source_connections",
};

const char *stats_tier_name(enum stats_tier t)
{
	return t < STATS_TIER_N ? tier_names[t] : "none";
}

enum stats_tier stats_tier_by_name(const char *name)
{
	for (unsigned t = 1; name && t < STATS_TIER_N; t++)
		if (strcmp(name, tier_names[t]) == 0)
			return (enum stats_tier)t;
	return STATS_TIER_NONE;
}

const char *stats_hs_name(enum stats_hs r)
{
	return r < STATS_HS_N ? hs_names[r] : "failed";
}

const char *stats_limit_name(enum stats_limit l)
{
	return l < STATS_LIMIT_N ? limit_names[l] : "other";
}

const char *stats_btls_name(enum stats_btls b)
{
	static const char *const names[STATS_BTLS_N] = { "verify", "handshake", "timeout" };

	return b < STATS_BTLS_N ? names[b] : "handshake";
}

struct stats_listener *stats_listener_get(const char *name)
{
	struct stats_listener *sl;

	pthread_mutex_lock(&registry_lock);
	for (sl = registry_head; sl; sl = sl->next)
		if (strcmp(sl->name, name) == 0)
			goto out;
	sl = calloc(1, sizeof(*sl));
	if (!sl)
		goto out;
	sl->name = strdup(name);
	if (!sl->name) {
		free(sl);
		sl = NULL;
		goto out;
	}
	*registry_tail = sl;
	registry_tail = &sl->next;
out:
	pthread_mutex_unlock(&registry_lock);
	return sl;
}

void stats_for_each(void (*fn)(struct stats_listener *sl, void *arg), void *arg)
{
	pthread_mutex_lock(&registry_lock);
	for (struct stats_listener *sl = registry_head; sl; sl = sl->next)
		fn(sl, arg);
	pthread_mutex_unlock(&registry_lock);
}

void stats_exit(void)
{
	struct stats_listener *sl, *next;

	pthread_mutex_lock(&registry_lock);
	for (sl = registry_head; sl; sl = next) {
		next = sl->next;
		for (unsigned i = 0; i < STATS_REASONS; i++)
			free(atomic_load(&sl->reasons[i].name));
		free(sl->name);
		free(sl);
	}
	registry_head = NULL;
	registry_tail = &registry_head;
	pthread_mutex_unlock(&registry_lock);
}

bool stats_conn_reserve(struct stats_listener *sl, unsigned max)
{
	if (atomic_fetch_add_explicit(&sl->active, 1, RELAXED) >= max) {
		atomic_fetch_sub_explicit(&sl->active, 1, RELAXED);
		stats_limit(sl, STATS_LIMIT_MAX_CONNECTIONS);
		return false;
	}
	atomic_fetch_add_explicit(&sl->active_tier[STATS_TIER_NONE], 1, RELAXED);
	return true;
}

void stats_conn_unreserve(struct stats_listener *sl)
{
	atomic_fetch_sub_explicit(&sl->active_tier[STATS_TIER_NONE], 1, RELAXED);
	atomic_fetch_sub_explicit(&sl->active, 1, RELAXED);
}

void stats_conn_tier(struct stats_listener *sl, enum stats_tier t)
{
	if (t != STATS_TIER_NONE) {
		atomic_fetch_sub_explicit(&sl->active_tier[STATS_TIER_NONE], 1, RELAXED);
		atomic_fetch_add_explicit(&sl->active_tier[t], 1, RELAXED);
	}
	atomic_fetch_add_explicit(&sl->total_tier[t], 1, RELAXED);
}

void stats_conn_closed(struct stats_listener *sl, enum stats_tier t)
{
	atomic_fetch_sub_explicit(&sl->active_tier[t], 1, RELAXED);
	atomic_fetch_sub_explicit(&sl->active, 1, RELAXED);
}

void stats_bytes(struct stats_listener *sl, uint64_t c2b, uint64_t b2c)
{
	if (c2b)
		atomic_fetch_add_explicit(&sl->bytes_c2b, c2b, RELAXED);
	if (b2c)
		atomic_fetch_add_explicit(&sl->bytes_b2c, b2c, RELAXED);
}

void stats_limit(struct stats_listener *sl, enum stats_limit l)
{
	atomic_fetch_add_explicit(&sl->limit[l], 1, RELAXED);
}

void stats_sockmap_backlog_reset(struct stats_listener *sl)
{
	atomic_fetch_add_explicit(&sl->sockmap_backlog_resets, 1, RELAXED);
}

void stats_backend_tls_failed(struct stats_listener *sl, enum stats_btls why)
{
	atomic_fetch_add_explicit(&sl->backend_tls_failures[why < STATS_BTLS_N ? why : 1], 1,
				  RELAXED);
}

/* Failure reasons: a fixed table filled lock-free; a slot's name is set once and never changes,
 * so a reader that sees it non-NULL can use it. */
static void count_reason(struct stats_listener *sl, const char *reason)
{
	for (unsigned i = 0; i < STATS_REASONS; i++) {
		struct stats_reason *r = &sl->reasons[i];
		char *name = atomic_load_explicit(&r->name, memory_order_acquire);
		char *mine;

		if (!name) {
			mine = strdup(reason);
			if (!mine)
				break;
			if (atomic_compare_exchange_strong_explicit(&r->name, &name, mine,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				name = mine;
			} else {
				free(mine); /* another worker took the slot: name is its entry */
			}
		}
		if (strcmp(name, reason) == 0) {
			atomic_fetch_add_explicit(&r->n, 1, RELAXED);
			return;
		}
	}
	atomic_fetch_add_explicit(&sl->reasons_other, 1, RELAXED);
}

void stats_handshake(struct stats_listener *sl, enum stats_hs r, uint64_t latency_us,
		     const char *reason)
{
	atomic_fetch_add_explicit(&sl->handshakes[r], 1, RELAXED);
	if (r == STATS_HS_OK) {
		unsigned b = 0;

		while (latency_us > stats_hs_bucket_us[b])
			b++; /* the last bound is UINT64_MAX */
		atomic_fetch_add_explicit(&sl->hs_bucket[b], 1, RELAXED);
		atomic_fetch_add_explicit(&sl->hs_sum_us, latency_us, RELAXED);
		return;
	}
	count_reason(sl, reason && *reason ? reason : "unknown");
}

void stats_reload(enum stats_reload r)
{
	atomic_fetch_add_explicit(&reloads[r], 1, RELAXED);
}

uint64_t stats_reloads(enum stats_reload r)
{
	return stats_read(&reloads[r]);
}
