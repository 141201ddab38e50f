#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admit.h"
#include "certstore.h"
#include "dp_sockmap.h"
#include "metrics.h"
#include "reload.h"
#include "stats.h"
#include "version.h"

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap ? b->cap * 2 : 16384) + (size_t)n;
		char *p = realloc(b->p, cap);

		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* A label value: backslash, double quote and newline escaped (text format 0.0.4). */
static const char *esc(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			buf[o++] = '\\';
			buf[o++] = *s;
		} else if (*s == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
	return buf;
}

static void head(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

struct pass {
	struct sbuf *b;
	const struct config *cfg;
	int what;
};

/* Listeners of the running config, and former ones that carried traffic (their counters stay:
 * Prometheus counters do not go away). Entries made by a refused reload are left out. */
static bool shown(const struct pass *p, struct stats_listener *sl)
{
	uint64_t total = 0;

	for (unsigned t = 0; t < KTLSD_TIER_N; t++)
		total += stats_read(&sl->total_tier[t]);
	return total || atomic_load_explicit(&sl->active, memory_order_relaxed) ||
	       config_listener_by_name(p->cfg, sl->name);
}

enum {
	M_ACTIVE,
	M_TOTAL,
	M_HS,
	M_FAIL,
	M_BYTES,
	M_HIST,
	M_LIMIT,
	M_BACKEND,
	M_BTLS,
	M_RESUMED,
	M_BACKLOG_RESETS,
	M_N
};

static void one_listener(struct stats_listener *sl, void *arg)
{
	struct pass *p = arg;
	struct sbuf *b = p->b;
	char l[256], r[256];
	uint64_t cum = 0;

	if (!shown(p, sl))
		return;
	esc(sl->name, l, sizeof(l));
	switch (p->what) {
	case M_ACTIVE:
		for (unsigned t = 0; t < KTLSD_TIER_N; t++)
			sb_printf(b, "ktlsd_connections_active{listener=\"%s\",tier=\"%s\"} %lld\n",
				  l, stats_tier_name(t),
				  (long long)atomic_load_explicit(&sl->active_tier[t],
								  memory_order_relaxed));
		break;
	case M_TOTAL:
		for (unsigned t = 0; t < KTLSD_TIER_N; t++)
			sb_printf(b, "ktlsd_connections_total{listener=\"%s\",tier=\"%s\"} %llu\n",
				  l, stats_tier_name(t),
				  (unsigned long long)stats_read(&sl->total_tier[t]));
		break;
	case M_HS:
		for (unsigned h = 0; h < STATS_HS_N; h++)
			sb_printf(b, "ktlsd_handshakes_total{listener=\"%s\",result=\"%s\"} %llu\n",
				  l, stats_hs_name(h),
				  (unsigned long long)stats_read(&sl->handshakes[h]));
		break;
	case M_FAIL:
		for (unsigned i = 0; i < STATS_REASONS; i++) {
			char *name =
			    atomic_load_explicit(&sl->reasons[i].name, memory_order_acquire);

			if (name)
				sb_printf(b,
					  "ktlsd_handshake_failures_total{listener=\"%s\","
					  "reason=\"%s\"} %llu\n",
					  l, esc(name, r, sizeof(r)),
					  (unsigned long long)stats_read(&sl->reasons[i].n));
		}
		if (stats_read(&sl->reasons_other))
			sb_printf(
			    b,
			    "ktlsd_handshake_failures_total{listener=\"%s\",reason=\"other\"} "
			    "%llu\n",
			    l, (unsigned long long)stats_read(&sl->reasons_other));
		break;
	case M_BYTES:
		sb_printf(
		    b,
		    "ktlsd_bytes_total{listener=\"%s\",direction=\"client_to_backend\"} %llu\n"
		    "ktlsd_bytes_total{listener=\"%s\",direction=\"backend_to_client\"} %llu\n",
		    l, (unsigned long long)stats_read(&sl->bytes_c2b), l,
		    (unsigned long long)stats_read(&sl->bytes_b2c));
		break;
	case M_HIST:
		for (unsigned i = 0; i < STATS_HS_BUCKETS; i++) {
			cum += stats_read(&sl->hs_bucket[i]);
			if (stats_hs_bucket_us[i] == UINT64_MAX)
				sb_printf(
				    b,
				    "ktlsd_handshake_seconds_bucket{listener=\"%s\",le=\"+Inf\"} "
				    "%llu\n",
				    l, (unsigned long long)cum);
			else
				sb_printf(
				    b,
				    "ktlsd_handshake_seconds_bucket{listener=\"%s\",le=\"%g\"} "
				    "%llu\n",
				    l, (double)stats_hs_bucket_us[i] / 1e6,
				    (unsigned long long)cum);
		}
		sb_printf(b, "ktlsd_handshake_seconds_sum{listener=\"%s\"} %.6f\n", l,
			  (double)stats_read(&sl->hs_sum_us) / 1e6);
		sb_printf(b, "ktlsd_handshake_seconds_count{listener=\"%s\"} %llu\n", l,
			  (unsigned long long)cum);
		break;
	case M_LIMIT:
		for (unsigned i = 0; i < STATS_LIMIT_N; i++)
			sb_printf(
			    b, "ktlsd_limit_refusals_total{listener=\"%s\",limit=\"%s\"} %llu\n", l,
			    stats_limit_name(i), (unsigned long long)stats_read(&sl->limit[i]));
		break;
	case M_BACKEND:
		sb_printf(b, "ktlsd_backend_failures_total{listener=\"%s\"} %llu\n", l,
			  (unsigned long long)stats_read(&sl->backend_failures));
		break;
	case M_BTLS:
		for (unsigned i = 0; i < STATS_BTLS_N; i++)
			sb_printf(b,
				  "ktlsd_backend_tls_failures_total{listener=\"%s\",reason=\"%s\"} "
				  "%llu\n",
				  l, stats_btls_name(i),
				  (unsigned long long)stats_read(&sl->backend_tls_failures[i]));
		break;
	case M_RESUMED:
		sb_printf(b, "ktlsd_handshakes_resumed_total{listener=\"%s\"} %llu\n", l,
			  (unsigned long long)stats_read(&sl->resumed));
		break;
	case M_BACKLOG_RESETS:
		sb_printf(b, "ktlsd_sockmap_backlog_resets_total{listener=\"%s\"} %llu\n", l,
			  (unsigned long long)stats_read(&sl->sockmap_backlog_resets));
		break;
	}
}

static const struct {
	const char *name, *type, *help;
} families[M_N] = {
	[M_ACTIVE] = { "ktlsd_connections_active", "gauge",
		       "Open connections by listener and datapath tier (none: handshake or "
		       "backend connect not finished)." },
	[M_TOTAL] = { "ktlsd_connections_total", "counter",
		      "Connections accepted, by listener and the tier they reached." },
	[M_HS] = { "ktlsd_handshakes_total", "counter",
		   "TLS handshakes by listener and result (ok, failed, timeout, aborted)." },
	[M_FAIL] = { "ktlsd_handshake_failures_total", "counter",
		     "Handshakes that did not complete, by listener and reason." },
	[M_BYTES] = { "ktlsd_bytes_total", "counter",
		      "Payload bytes forwarded, by listener and direction." },
	[M_HIST] = { "ktlsd_handshake_seconds", "histogram",
		     "Time from accept to the end of a completed TLS handshake." },
	[M_LIMIT] = { "ktlsd_limit_refusals_total", "counter",
		      "Connections closed at accept because of a limit." },
	[M_BACKEND] = { "ktlsd_backend_failures_total", "counter",
			"Connections closed because no backend server could be reached." },
	[M_BTLS] = { "ktlsd_backend_tls_failures_total", "counter",
		     "TLS handshakes towards backends that failed, by listener and reason "
		     "(verify, handshake, timeout); each closed its client connection." },
	[M_RESUMED] = { "ktlsd_handshakes_resumed_total", "counter",
			"Completed TLS handshakes that resumed a session (a ticket)." },
	[M_BACKLOG_RESETS] = { "ktlsd_sockmap_backlog_resets_total", "counter",
			       "Sockmap connections reset because the bytes waiting in the "
			       "kernel passed limits.sockmap_backlog." },
};

static void certificates(struct sbuf *b, struct reload *rl)
{
	const struct config *cfg = rl->st->cfg;
	char n[256];

	head(b, "ktlsd_certificate_not_after_seconds", "gauge",
	     "Expiry (notAfter) of each configured certificate, Unix time.");
	for (size_t i = 0; i < rl->n_certs && i < cfg->n_certs; i++)
		if (rl->certs[i])
			sb_printf(b,
				  "ktlsd_certificate_not_after_seconds{certificate=\"%s\"} %lld\n",
				  esc(cfg->certs[i].name, n, sizeof(n)),
				  (long long)certstore_cert_not_after(rl->certs[i]));
}

int metrics_render(struct reload *rl, char **out, size_t *len)
{
	struct sbuf b = { 0 };
	struct pass p = { .b = &b };

	pthread_mutex_lock(&rl->lock);
	p.cfg = rl->st->cfg;
	for (p.what = 0; p.what < M_N; p.what++) {
		head(&b, families[p.what].name, families[p.what].type, families[p.what].help);
		stats_for_each(one_listener, &p);
	}
	certificates(&b, rl);
	head(&b, "ktlsd_reloads_total", "counter",
	     "Reloads and certificate changes, by result (ok, failed).");
	sb_printf(&b, "ktlsd_reloads_total{result=\"ok\"} %llu\n",
		  (unsigned long long)stats_reloads(STATS_RELOAD_OK));
	sb_printf(&b, "ktlsd_reloads_total{result=\"failed\"} %llu\n",
		  (unsigned long long)stats_reloads(STATS_RELOAD_FAILED));
	head(&b, "ktlsd_open_connections", "gauge",
	     "Connections open on all listeners (limits.max_connections).");
	sb_printf(&b, "ktlsd_open_connections %u\n", admit_connections());
	head(&b, "ktlsd_handshakes_in_progress", "gauge",
	     "TLS handshakes in progress on all listeners (limits.max_handshakes).");
	sb_printf(&b, "ktlsd_handshakes_in_progress %u\n", admit_handshakes());
	head(&b, "ktlsd_limit_sources_tracked", "gauge",
	     "Source addresses in the per-source limit table (at most "
	     "limits.per_source.table_size).");
	sb_printf(&b, "ktlsd_limit_sources_tracked %u\n", admit_sources_tracked());
	head(&b, "ktlsd_sockmap_backlog_bytes", "gauge",
	     "Bytes the sockmap connections have waiting in the kernel, all together.");
	sb_printf(&b, "ktlsd_sockmap_backlog_bytes %llu\n",
		  (unsigned long long)dp_sockmap_backlog());
	head(&b, "ktlsd_sockmap_backlog_budget_bytes", "gauge",
	     "limits.sockmap_backlog: past it, the largest backlogs are reset.");
	sb_printf(&b, "ktlsd_sockmap_backlog_budget_bytes %llu\n",
		  (unsigned long long)p.cfg->limits.sockmap_backlog);
	head(&b, "ktlsd_start_time_seconds", "gauge", "When ktlsd started, Unix time.");
	sb_printf(&b, "ktlsd_start_time_seconds %lld\n", (long long)rl->started);
	head(&b, "ktlsd_last_change_time_seconds", "gauge",
	     "When the running config last changed (start, reload, cert-set, cert-del, drain).");
	sb_printf(&b, "ktlsd_last_change_time_seconds %lld\n", (long long)rl->last_change);
	head(&b, "ktlsd_build_info", "gauge", "Always 1; the version in a label.");
	sb_printf(&b, "ktlsd_build_info{version=\"%s\"} 1\n", KTLSD_VERSION);
	pthread_mutex_unlock(&rl->lock);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

static int response(const char *status, const char *ctype, const char *body, size_t blen,
		    bool with_body, char **out, size_t *outlen)
{
	struct sbuf b = { 0 };

	sb_printf(&b,
		  "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		  "Connection: close\r\n\r\n",
		  status, ctype, blen);
	if (with_body)
		sb_printf(&b, "%.*s", (int)blen, body);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*outlen = b.len;
	return 0;
}

int metrics_http(struct reload *rl, const char *req, size_t len, bool complete, char **out,
		 size_t *outlen)
{
	char method[16], target[256], version[16], line[512];
	const char *eol = memchr(req, '\n', len);
	char *body = NULL;
	size_t blen = 0;
	bool head_only;
	int ret;

	if (!complete || !eol || (size_t)(eol - req) >= sizeof(line))
		return response("400 Bad Request", "text/plain", "bad request\n", 12, true, out,
				outlen);
	memcpy(line, req, (size_t)(eol - req));
	line[eol - req] = '\0';
	if (sscanf(line, "%15s %255s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0)
		return response("400 Bad Request", "text/plain", "bad request\n", 12, true, out,
				outlen);
	head_only = strcmp(method, "HEAD") == 0;
	if (!head_only && strcmp(method, "GET") != 0)
		return response("405 Method Not Allowed", "text/plain", "GET /metrics\n", 13, true,
				out, outlen);
	target[strcspn(target, "?")] = '\0';
	if (strcmp(target, "/metrics") != 0)
		return response("404 Not Found", "text/plain", "try /metrics\n", 13, !head_only,
				out, outlen);
	ret = metrics_render(rl, &body, &blen);
	if (ret == 0)
		ret = response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body, blen,
			       !head_only, out, outlen);
	free(body);
	return ret;
}
