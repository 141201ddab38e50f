#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "admit.h"
#include "log.h"
#include "ratelog.h"

#define WAYS 4
#define STRIPES 64

struct source {
	uint64_t key;	  /* the /64 or the IPv4 address */
	uint64_t last_ms; /* last admission attempt */
	uint64_t tokens;  /* thousandths of a connection */
	uint32_t handshakes;
	uint32_t conns; /* open connections, counted when per_source.max_connections is on */
	bool used, v6;
};

static struct {
	struct source *src;
	size_t n_sets; /* a power of two */
	uint64_t secret[2];
	pthread_mutex_t lock[STRIPES];
	atomic_uint conns, handshakes, tracked;
} lim;

static struct ratelog logs[STATS_LIMIT_N];

int admit_init(const struct config *cfg)
{
	size_t sets = 16;

	while (sets * 2 * WAYS <= cfg->limits.per_source.table_size)
		sets *= 2;
	lim.src = calloc(sets * WAYS, sizeof(*lim.src));
	if (!lim.src)
		return -ENOMEM;
	lim.n_sets = sets;
	/* Without the secret an attacker cannot aim many addresses at one set. */
	if (getrandom(lim.secret, sizeof(lim.secret), 0) != sizeof(lim.secret))
		log_warn("limits: getrandom failed; the source table's hash is unkeyed");
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_init(&lim.lock[i], NULL);
	atomic_store(&lim.tracked, 0);
	return 0;
}

void admit_exit(void)
{
	if (!lim.src)
		return;
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&lim.lock[i]);
	free(lim.src);
	lim.src = NULL;
}

/* The source of peer: an IPv4 address (also when mapped into IPv6) or an IPv6 /64. False for
 * anything else (a UNIX socket): not tracked. */
static bool source_key(const struct sockaddr_storage *peer, uint64_t *key, bool *v6)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)peer;
	uint32_t a4;
	uint64_t p;

	if (peer->ss_family == AF_INET) {
		*key = ntohl(((const struct sockaddr_in *)peer)->sin_addr.s_addr);
		*v6 = false;
		return true;
	}
	if (peer->ss_family != AF_INET6)
		return false;
	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		memcpy(&a4, &s6->sin6_addr.s6_addr[12], 4);
		*key = ntohl(a4);
		*v6 = false;
		return true;
	}
	memcpy(&p, s6->sin6_addr.s6_addr, 8);
	*key = p;
	*v6 = true;
	return true;
}

/* A keyed mix (splitmix64's finaliser around a secret): enough to spread sources over sets when
 * the secret is unknown; the table is bounded whatever the spread. */
static size_t set_of(uint64_t key, bool v6)
{
	uint64_t x = (key ^ lim.secret[0]) + (v6 ? lim.secret[1] : ~lim.secret[1]);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (size_t)(x & (lim.n_sets - 1));
}

static pthread_mutex_t *lock_of(size_t set)
{
	return &lim.lock[set % STRIPES];
}

/* The entry for key in set (lock held): found, or a free or least recently seen entry holding no
 * handshake and no connection taken over. NULL when every entry of the set holds some. */
static struct source *source_get(size_t set, uint64_t key, bool v6, const struct config *cfg,
				 uint64_t now_ms)
{
	struct source *s = &lim.src[set * WAYS], *victim = NULL;

	for (int i = 0; i < WAYS; i++)
		if (s[i].used && s[i].key == key && s[i].v6 == v6)
			return &s[i];
	for (int i = 0; i < WAYS; i++) {
		if (!s[i].used) {
			victim = &s[i];
			break;
		}
		if (!s[i].handshakes && !s[i].conns && (!victim || s[i].last_ms < victim->last_ms))
			victim = &s[i];
	}
	if (!victim)
		return NULL;
	if (!victim->used)
		atomic_fetch_add_explicit(&lim.tracked, 1, memory_order_relaxed);
	*victim = (struct source){ .key = key,
				   .v6 = v6,
				   .used = true,
				   .last_ms = now_ms,
				   .tokens = (uint64_t)cfg->limits.per_source.burst * 1000 };
	return victim;
}

/* A token from the source's bucket: false when it is empty. */
static bool take_token(struct source *s, const struct config *cfg, uint64_t now_ms)
{
	uint64_t rate = cfg->limits.per_source.rate, cap = cfg->limits.per_source.burst * 1000ULL;

	if (now_ms > s->last_ms)
		s->tokens = MIN(cap, s->tokens + (now_ms - s->last_ms) * rate);
	s->last_ms = now_ms;
	s->tokens = MIN(s->tokens, cap); /* burst may have shrunk at a reload */
	if (s->tokens < 1000)
		return false;
	s->tokens -= 1000;
	return true;
}

/* One more of a global counter unless it would pass max. */
static bool global_take(atomic_uint *n, uint32_t max)
{
	if (atomic_fetch_add_explicit(n, 1, memory_order_relaxed) >= max) {
		atomic_fetch_sub_explicit(n, 1, memory_order_relaxed);
		return false;
	}
	return true;
}

enum stats_limit admit_connection(const struct config *cfg, const struct sockaddr_storage *peer,
				  bool handshake, uint64_t now_ms, struct admit_hold *h)
{
	const uint32_t max_hs = handshake ? cfg->limits.per_source.max_handshakes : 0;
	const uint32_t max_conns = cfg->limits.per_source.max_connections;
	const bool per_src = cfg->limits.per_source.rate || max_hs || max_conns;
	enum stats_limit why = STATS_LIMIT_N;
	struct source *s = NULL;
	pthread_mutex_t *lk = NULL;
	uint64_t key;
	size_t set = 0;
	bool v6, took;

	memset(h, 0, sizeof(*h));
	if (per_src && lim.src && source_key(peer, &key, &v6)) {
		set = set_of(key, v6);
		lk = lock_of(set);
		pthread_mutex_lock(lk);
		s = source_get(set, key, v6, cfg, now_ms);
	}
	took = s && cfg->limits.per_source.rate;
	if (took && !take_token(s, cfg, now_ms)) {
		why = STATS_LIMIT_SOURCE_RATE;
		took = false;
	} else if (s && max_conns && s->conns >= max_conns)
		why = STATS_LIMIT_SOURCE_CONNECTIONS;
	else if (s && max_hs && s->handshakes >= max_hs)
		why = STATS_LIMIT_SOURCE_HANDSHAKES;
	else if (!global_take(&lim.conns, cfg->limits.max_connections))
		why = STATS_LIMIT_TOTAL_CONNECTIONS;
	else if (handshake && !global_take(&lim.handshakes, cfg->limits.max_handshakes))
		why = STATS_LIMIT_HANDSHAKES;
	if (s)
		s->last_ms = now_ms;
	if (took && why != STATS_LIMIT_N)
		s->tokens += 1000; /* only admitted connections spend the source's rate */
	if (why == STATS_LIMIT_HANDSHAKES)
		atomic_fetch_sub_explicit(&lim.conns, 1, memory_order_relaxed);
	if (why == STATS_LIMIT_N) {
		h->conn = true;
		h->hs = handshake;
		if (s && (handshake || max_conns)) {
			h->src = (uint32_t)(s - lim.src) + 1;
			h->src_key = key;
			h->src_hs = handshake;
			h->src_conn = max_conns != 0;
			s->handshakes += handshake;
			s->conns += h->src_conn;
		}
	}
	if (lk)
		pthread_mutex_unlock(lk);
	return why;
}

/* Gives back what h holds of its source entry: a handshake, a connection, or both. */
static void source_put(struct admit_hold *h, bool hs, bool conn)
{
	struct source *s = &lim.src[h->src - 1];
	pthread_mutex_t *lk = lock_of((h->src - 1) / WAYS);

	pthread_mutex_lock(lk);
	if (s->used && s->key == h->src_key) {
		if (hs && s->handshakes)
			s->handshakes--;
		if (conn && s->conns)
			s->conns--;
	}
	pthread_mutex_unlock(lk);
}

void admit_handshake_done(struct admit_hold *h)
{
	if (h->hs)
		atomic_fetch_sub_explicit(&lim.handshakes, 1, memory_order_relaxed);
	h->hs = false;
	if (h->src && h->src_hs)
		source_put(h, true, false);
	h->src_hs = false;
	if (!h->src_conn)
		h->src = 0;
}

void admit_release(struct admit_hold *h)
{
	admit_handshake_done(h);
	if (h->src && h->src_conn)
		source_put(h, false, true);
	h->src = 0;
	h->src_conn = false;
	if (h->conn)
		atomic_fetch_sub_explicit(&lim.conns, 1, memory_order_relaxed);
	h->conn = false;
}

unsigned admit_connections(void)
{
	return atomic_load_explicit(&lim.conns, memory_order_relaxed);
}

unsigned admit_handshakes(void)
{
	return atomic_load_explicit(&lim.handshakes, memory_order_relaxed);
}

unsigned admit_sources_tracked(void)
{
	return atomic_load_explicit(&lim.tracked, memory_order_relaxed);
}

static const char *const refusal_text[STATS_LIMIT_N] = {
	[STATS_LIMIT_MAX_CONNECTIONS] = "max_connections reached",
	[STATS_LIMIT_OPEN_FILES] = "out of file descriptors (accept: EMFILE/ENFILE)",
	[STATS_LIMIT_MEMORY] = "out of memory",
	[STATS_LIMIT_TOTAL_CONNECTIONS] = "limits.max_connections (all listeners) reached",
	[STATS_LIMIT_HANDSHAKES] = "limits.max_handshakes in progress reached",
	[STATS_LIMIT_SOURCE_RATE] = "a source passed limits.per_source.rate",
	[STATS_LIMIT_SOURCE_HANDSHAKES] = "a source reached limits.per_source.max_handshakes",
	[STATS_LIMIT_SOURCE_CONNECTIONS] = "a source reached limits.per_source.max_connections",
};

void admit_log_refusal(const char *listener, enum stats_limit l, uint64_t now_ms)
{
	uint64_t left_out = 0;

	if (l >= STATS_LIMIT_N || !ratelog_allow(&logs[l], now_ms, &left_out))
		return;
	log_warn("listener %s: %s: refusing new connections (%llu more refusals for this limit "
		 "since the last line; counted in ktlsd_limit_refusals_total)",
		 listener, refusal_text[l], (unsigned long long)left_out);
}
