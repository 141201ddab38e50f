/* ctl_show — the read-only views of the control protocol: stats, listeners, certs. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "certstore.h"
#include "ctl.h"
#include "reload.h"
#include "stats.h"

json_t *ctl_json_time(time_t t)
{
	char buf[32];
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

static json_t *u64(stats_u64 *v)
{
	return json_integer((json_int_t)stats_read(v));
}

static json_t *listener_counters(struct stats_listener *sl)
{
	json_t *active = json_object(), *total = json_object(), *hs = json_object();
	json_t *fail = json_object(), *lim = json_object();
	uint64_t n = 0;

	for (unsigned t = 0; t < KTLSD_TIER_N; t++) {
		json_object_set_new(active, stats_tier_name(t),
				    json_integer((json_int_t)atomic_load_explicit(
					&sl->active_tier[t], memory_order_relaxed)));
		json_object_set_new(total, stats_tier_name(t), u64(&sl->total_tier[t]));
		n += stats_read(&sl->total_tier[t]);
	}
	for (unsigned h = 0; h < STATS_HS_N; h++)
		json_object_set_new(hs, stats_hs_name(h), u64(&sl->handshakes[h]));
	for (unsigned i = 0; i < STATS_REASONS; i++) {
		char *name = atomic_load_explicit(&sl->reasons[i].name, memory_order_acquire);

		if (name)
			json_object_set_new(fail, name, u64(&sl->reasons[i].n));
	}
	if (stats_read(&sl->reasons_other))
		json_object_set_new(fail, "other", u64(&sl->reasons_other));
	for (unsigned l = 0; l < STATS_LIMIT_N; l++)
		json_object_set_new(lim, stats_limit_name(l), u64(&sl->limit[l]));
	return json_pack("{s:{s:i,s:I,s:o,s:o},s:o,s:o,s:{s:o,s:o},s:o,s:o,s:o}", "connections",
			 "active", (int)atomic_load_explicit(&sl->active, memory_order_relaxed),
			 "total", (json_int_t)n, "active_by_tier", active, "total_by_tier", total,
			 "handshakes", hs, "handshake_failures", fail, "bytes", "client_to_backend",
			 u64(&sl->bytes_c2b), "backend_to_client", u64(&sl->bytes_b2c),
			 "limit_refusals", lim, "backend_failures", u64(&sl->backend_failures),
			 "sockmap_backlog_resets", u64(&sl->sockmap_backlog_resets));
}

static void add_counters(struct stats_listener *sl, void *arg)
{
	json_object_set_new(arg, sl->name, listener_counters(sl));
}

json_t *ctl_show_stats(struct reload *rl)
{
	json_t *ls = json_object(), *r;

	stats_for_each(add_counters, ls);
	r = json_pack("{s:b,s:I,s:{s:I,s:I},s:o}", "ok", 1, "uptime_s",
		      (json_int_t)(time(NULL) - rl->started), "reloads", "ok",
		      (json_int_t)stats_reloads(STATS_RELOAD_OK), "failed",
		      (json_int_t)stats_reloads(STATS_RELOAD_FAILED), "listeners", ls);
	return r ? r : ctl_error("out of memory");
}

struct removed_pass {
	const struct config *cfg;
	json_t *arr;
};

/* Listeners a reload removed whose connections are still finishing. */
static void add_removed(struct stats_listener *sl, void *arg)
{
	struct removed_pass *p = arg;
	unsigned active = atomic_load_explicit(&sl->active, memory_order_relaxed);

	if (active && !config_listener_by_name(p->cfg, sl->name))
		json_array_append_new(p->arr,
				      json_pack("{s:s,s:s,s:{s:i}}", "name", sl->name, "state",
						"removed", "connections", "active", (int)active));
}

static json_t *listener_json(const struct config *cfg, const struct listener_rt *lr, bool drained)
{
	const struct cfg_listener *l = lr->cfg;
	json_t *certs = json_array(), *o;
	uint64_t total = 0;

	for (size_t j = 0; j < l->n_certs; j++)
		json_array_append_new(certs, json_string(l->cert_names[j]));
	for (unsigned t = 0; t < KTLSD_TIER_N; t++)
		total += stats_read(&lr->stats->total_tier[t]);
	o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:i,s:{s:i,s:I}}", "name", l->name, "bind",
		      l->bind.text, "protocol", cfg_protocol_names[l->protocol], "state",
		      drained ? "draining" : "serving", "datapath", cfg_datapath_names[l->datapath],
		      "certificates", certs, "max_connections", (int)l->max_connections,
		      "connections", "active",
		      (int)atomic_load_explicit(&lr->stats->active, memory_order_relaxed), "total",
		      (json_int_t)total);
	json_object_set_new(o, "backend",
			    l->backend_name ? json_string(l->backend_name) : json_null());
	json_object_set_new(o, "security_policy",
			    l->protocol == CFG_PROTO_TLS && l->security_policy
				? json_string(l->security_policy)
				: json_null());
	return o;
}

json_t *ctl_show_listeners(struct reload *rl)
{
	struct removed_pass p = { .arr = json_array() };

	pthread_mutex_lock(&rl->lock);
	p.cfg = rl->st->cfg;
	for (size_t i = 0; i < p.cfg->n_listeners; i++)
		json_array_append_new(p.arr,
				      listener_json(p.cfg, &rl->st->listeners[i], rl->drained[i]));
	stats_for_each(add_removed, &p);
	pthread_mutex_unlock(&rl->lock);
	return json_pack("{s:b,s:o}", "ok", 1, "listeners", p.arr);
}

static json_t *cert_details(const struct certstore_cert *c, json_t *o)
{
	json_t *names = json_array();
	time_t now = time(NULL), na = certstore_cert_not_after(c);

	for (size_t i = 0; i < certstore_cert_name_count(c); i++)
		json_array_append_new(names, json_string(certstore_cert_name(c, i)));
	json_object_set_new(o, "names", names);
	json_object_set_new(o, "key_type", json_string(certstore_cert_key_desc(c)));
	json_object_set_new(o, "subject", json_string(certstore_cert_subject(c)));
	json_object_set_new(o, "not_before", ctl_json_time(certstore_cert_not_before(c)));
	json_object_set_new(o, "not_after", ctl_json_time(na));
	json_object_set_new(o, "not_after_seconds", json_integer((json_int_t)na));
	json_object_set_new(o, "days_left", json_integer((json_int_t)((na - now) / 86400)));
	json_object_set_new(o, "expired", json_boolean(certstore_cert_is_expired(c, now)));
	json_object_set_new(o, "intermediates",
			    json_integer((json_int_t)certstore_cert_chain_len(c)));
	return o;
}

static json_t *cert_json(struct reload *rl, size_t i)
{
	const struct config *cfg = rl->st->cfg;
	const struct cfg_cert *cc = &cfg->certs[i];
	json_t *domains = json_array(), *users = json_array(), *o;
	bool deleted = false;

	for (size_t j = 0; j < cc->n_domains; j++)
		json_array_append_new(domains, json_string(cc->domains[j]));
	for (size_t l = 0; l < cfg->n_listeners; l++)
		for (size_t j = 0; j < cfg->listeners[l].n_certs; j++)
			if (cfg->listeners[l].certs[j] == i)
				json_array_append_new(users, json_string(cfg->listeners[l].name));
	for (size_t d = 0; d < rl->n_deleted; d++)
		deleted |= strcmp(rl->deleted[d], cc->name) == 0;
	o = json_pack("{s:s,s:s,s:s,s:o,s:o,s:b}", "name", cc->name, "cert", cc->cert, "key",
		      cc->key, "domains", domains, "in_use_by", users, "deleted", deleted);
	if (i < rl->n_certs && rl->certs[i])
		cert_details(rl->certs[i], o);
	else
		json_object_set_new(o, "error",
				    json_string(i < rl->n_certs && rl->cert_err[i] ? rl->cert_err[i]
										   : "not loaded"));
	return o;
}

json_t *ctl_show_certs(struct reload *rl, const char *name)
{
	json_t *arr = json_array();
	const struct config *cfg;

	pthread_mutex_lock(&rl->lock);
	cfg = rl->st->cfg;
	for (size_t i = 0; i < cfg->n_certs; i++)
		if (!name || strcmp(cfg->certs[i].name, name) == 0)
			json_array_append_new(arr, cert_json(rl, i));
	pthread_mutex_unlock(&rl->lock);
	if (name && json_array_size(arr) == 0) {
		json_decref(arr);
		return ctl_error("certs: no certificate named \"%s\"", name);
	}
	return json_pack("{s:b,s:o}", "ok", 1, "certificates", arr);
}
