#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_tls_ctx.h"
#include "keyfile.h"
#include "log.h"
#include "privdrop.h"
#include "state.h"
#include "tlsctx.h"

static void state_free(struct state *s)
{
	for (size_t i = 0; s->listeners && i < s->cfg->n_listeners; i++) {
		SSL_CTX_free(s->listeners[i].ctx);
		SSL_CTX_free(s->listeners[i].bctx);
		policy_free(s->listeners[i].policy);
	}
	free(s->listeners);
	free(s->backends);
	config_put(s->cfg);
	free(s);
}

static void warn_policy(const struct config *cfg, size_t i, const struct policy *p)
{
	for (size_t k = 0; k < p->n_unavailable; k++)
		log_warn("%s: listeners[%zu].security_policy: %s: cipher %s is not available in "
			 "this OpenSSL build and is left out",
			 cfg->path, i, p->name, p->unavailable[k]);
	if (p->weak)
		log_warn(
		    "listener %s: security policy %s allows %s (weak; OpenSSL security level 0)",
		    cfg->listeners[i].name, p->name, policy_version_name(p->min_version));
}

/* The contexts of listener i: 0, or negative with the reason in errs (when the failing step said
 * nothing (out of memory), the caller adds a line: a listener never runs half set up, e.g.
 * without the TLS its backend_tls asks for). */
static int listener_build(struct state *s, struct config *cfg, size_t i, struct cfg_errors *errs)
{
	struct listener_rt *lr = &s->listeners[i];
	const struct cfg_listener *l = &cfg->listeners[i];
	char why[256];
	int ret = 0;

	GUARD(backend_tls_ctx_build(cfg, i, &lr->bctx, errs));
	if (l->protocol != CFG_PROTO_TLS)
		return 0;
	if (policy_lookup(cfg, l->security_policy, &lr->policy, why, sizeof(why)) < 0) {
		config_errors_add(errs, "%s: listeners[%zu].security_policy: %s", cfg->path, i,
				  why);
		ENSURE(false, EINVAL);
	}
	warn_policy(cfg, i, lr->policy);
	GUARD(tlsctx_build(cfg, i, lr->policy, &lr->ctx, errs));
cleanup:
	return ret;
}

/* Private keys of the certificates listeners serve and session-ticket key files: permissions, and
 * the owner when ktlsd drops to a user. */
static void check_keys(const struct config *cfg, struct cfg_errors *errs)
{
	struct privdrop_id id;
	char json_path[300];

	if (privdrop_resolve(cfg, &id, errs) < 0)
		return;
	for (size_t i = 0; i < cfg->n_certs; i++) {
		bool used = false;

		for (size_t l = 0; l < cfg->n_listeners; l++)
			for (size_t j = 0; j < cfg->listeners[l].n_certs; j++)
				used |= cfg->listeners[l].certs[j] == i &&
					cfg->listeners[l].protocol == CFG_PROTO_TLS;
		snprintf(json_path, sizeof(json_path), "certificates.%s.key", cfg->certs[i].name);
		if (used)
			keyfile_check(cfg, cfg->certs[i].key, json_path,
				      id.enabled ? id.uid : (uid_t)-1, errs);
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];

		snprintf(json_path, sizeof(json_path), "listeners[%zu].session_tickets.key_file",
			 i);
		if (l->session_resumption && l->session_tickets.key_file)
			keyfile_check(cfg, l->session_tickets.key_file, json_path,
				      id.enabled ? id.uid : (uid_t)-1, errs);
	}
}

int state_build(struct config *cfg, struct state **out, struct cfg_errors *errs)
{
	struct state *s = calloc(1, sizeof(*s));
	bool failed = false;
	size_t n0;
	int ret = 0, r;

	ENSURE(s, ENOMEM);
	atomic_init(&s->refs, 1);
	s->cfg = config_get(cfg);
	s->listeners = calloc(cfg->n_listeners, sizeof(*s->listeners));
	s->backends = calloc(cfg->n_backends ? cfg->n_backends : 1, sizeof(*s->backends));
	ENSURE(s->listeners && s->backends, ENOMEM);
	for (size_t i = 0; i < cfg->n_backends; i++)
		s->backends[i].cfg = &cfg->backends[i];
	check_keys(cfg, errs);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct listener_rt *lr = &s->listeners[i];
		const struct cfg_listener *l = &cfg->listeners[i];

		lr->cfg = l;
		lr->index = i;
		lr->backend = l->backend_name ? &s->backends[l->backend] : NULL;
		lr->stats = stats_listener_get(l->name);
		ENSURE(lr->stats, ENOMEM);
		n0 = errs->n;
		r = listener_build(s, cfg, i, errs);
		if (r < 0) {
			failed = true;
			if (errs->n == n0)
				config_errors_add(errs, "%s: listeners[%zu]: cannot be set up: %s",
						  cfg->path, i, strerror(-r));
		}
	}
	ENSURE(!failed && errs->n == 0, EINVAL);
	*out = s;
	s = NULL;
cleanup:
	if (s)
		state_free(s);
	return ret;
}

struct state *state_get(struct state *s)
{
	atomic_fetch_add(&s->refs, 1);
	return s;
}

void state_put(struct state *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		state_free(s);
}
