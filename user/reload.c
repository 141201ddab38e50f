#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certstore.h"
#include "log.h"
#include "reload.h"
#include "stats.h"

#define ADOPT_TIMEOUT_MS 10000
#define DRAIN_TIMEOUT_MS 5000

/* Which socket each listener of the new state gets. */
struct plan {
	size_t n_new;
	ssize_t *keep; /* per new listener: the old listener whose sockets it keeps, or -1 */
	int *fds;      /* [worker * n_new + listener]: a socket opened for it, or -1 */
	unsigned n_workers;
};

static void plan_free(struct plan *p)
{
	for (size_t i = 0; p->fds && i < p->n_workers * p->n_new; i++)
		if (p->fds[i] >= 0)
			close(p->fds[i]);
	free(p->fds);
	free(p->keep);
}

static bool same_addr(const struct cfg_addr *a, const struct cfg_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* A new listener keeps the sockets of the old one with its name and bind address, else of an
 * unclaimed old one with its bind address (a rename), else gets sockets of its own, opened here
 * so that a bind error refuses the reload before any worker changed. */
static int plan_make(struct reload *r, const struct config *nc, struct plan *p,
		     struct reload_report *rep)
{
	const struct config *oc = r->st->cfg;
	bool *used = calloc(oc->n_listeners, sizeof(*used));
	char err[256];
	int ret = 0;

	p->n_new = nc->n_listeners;
	p->n_workers = r->n_workers;
	p->keep = calloc(nc->n_listeners, sizeof(*p->keep));
	p->fds = calloc((size_t)r->n_workers * nc->n_listeners, sizeof(*p->fds));
	ENSURE(used && p->keep && p->fds, ENOMEM);
	for (size_t i = 0; i < (size_t)r->n_workers * nc->n_listeners; i++)
		p->fds[i] = -1;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < nc->n_listeners; i++) {
			if (pass == 0)
				p->keep[i] = -1;
			for (size_t j = 0; p->keep[i] < 0 && j < oc->n_listeners; j++) {
				if (used[j] || r->drained[j] ||
				    !same_addr(&nc->listeners[i].bind, &oc->listeners[j].bind) ||
				    (pass == 0 &&
				     strcmp(nc->listeners[i].name, oc->listeners[j].name) != 0))
					continue;
				used[j] = true;
				p->keep[i] = (ssize_t)j;
			}
		}
	}
	for (size_t i = 0; i < nc->n_listeners; i++) {
		if (p->keep[i] >= 0)
			continue;
		for (unsigned k = 0; k < r->n_workers; k++) {
			int fd = worker_listen_socket(&nc->listeners[i], err, sizeof(err));

			if (fd < 0) {
				config_errors_add(&rep->problems, "%s: listeners[%zu].bind: %s",
						  nc->path, i, err);
				ENSURE(false, -fd);
			}
			p->fds[k * nc->n_listeners + i] = fd;
		}
	}
	for (size_t i = 0; i < nc->n_listeners; i++) {
		if (p->keep[i] < 0)
			config_errors_add(&rep->added, "%s", nc->listeners[i].name);
		else
			config_errors_add(&rep->kept, "%s", nc->listeners[i].name);
	}
	/* Removed: sockets nobody keeps, unless it is a drained listener the config still has
	 * (reopened, so only "added"). A new bind address is both removed and added. */
	for (size_t j = 0; j < oc->n_listeners; j++) {
		const struct cfg_listener *nl = config_listener_by_name(nc, oc->listeners[j].name);

		if (!used[j] && (!nl || !same_addr(&nl->bind, &oc->listeners[j].bind)))
			config_errors_add(&rep->removed, "%s", oc->listeners[j].name);
	}
cleanup:
	free(used);
	return ret;
}

/* cert-del: take the deleted certificates out of a freshly loaded config that nobody else holds
 * yet (the snapshot becomes immutable once a state is built on it). */
static void overlay_apply(struct reload *r, struct config *cfg, struct reload_report *rep)
{
	for (size_t d = 0; d < r->n_deleted; d++) {
		const char *name = r->deleted[d];
		bool known = false;

		for (size_t ci = 0; ci < cfg->n_certs; ci++)
			known |= strcmp(cfg->certs[ci].name, name) == 0;
		if (!known)
			continue;
		config_errors_add(&rep->warnings, "certificate %s stays out of service (cert-del)",
				  name);
		for (size_t i = 0; i < cfg->n_listeners; i++) {
			struct cfg_listener *l = &cfg->listeners[i];
			size_t k = 0;

			for (size_t j = 0; j < l->n_certs; j++) {
				if (strcmp(l->cert_names[j], name) == 0) {
					free(l->cert_names[j]);
					continue;
				}
				l->cert_names[k] = l->cert_names[j];
				l->certs[k++] = l->certs[j];
			}
			l->n_certs = k;
			if (k == 0 && l->protocol == CFG_PROTO_TLS)
				config_errors_add(
				    &rep->problems,
				    "%s: listeners[%zu].certificates: listener %s would "
				    "have no certificate left: %s was deleted with "
				    "cert-del",
				    cfg->path, i, l->name, name);
		}
	}
}

static void warn_restart_only(const struct config *o, const struct config *n,
			      struct reload_report *rep)
{
	if (o->workers != n->workers)
		config_errors_add(&rep->warnings, "%s: workers: a change takes effect at restart",
				  n->path);
	if (o->limits.per_source.table_size != n->limits.per_source.table_size)
		config_errors_add(&rep->warnings,
				  "%s: limits.per_source.table_size: a change "
				  "takes effect at restart",
				  n->path);
	if (strcmp(o->control.socket, n->control.socket) != 0)
		config_errors_add(&rep->warnings,
				  "%s: control.socket: a change takes effect at restart", n->path);
	if (o->metrics.enabled != n->metrics.enabled ||
	    (n->metrics.enabled && !same_addr(&o->metrics.bind, &n->metrics.bind)))
		config_errors_add(&rep->warnings,
				  "%s: metrics.bind: a change takes effect at restart", n->path);
}

/* Config, cert-del overlay, datapath check and state: what startup does. */
static int build(struct reload *r, struct state **out, struct reload_report *rep)
{
	struct config *cfg = NULL;
	int ret = config_load(r->path, &cfg, &rep->problems);

	if (ret < 0)
		return ret;
	overlay_apply(r, cfg, rep);
	datapath_check(cfg, &r->caps, &rep->problems);
	if (rep->problems.n == 0)
		ret = state_build(cfg, out, &rep->problems);
	else
		ret = -EINVAL;
	config_put(cfg); /* the state holds its own reference */
	return ret;
}

static int adopt(struct reload *r, struct state *nst, struct plan *p, struct reload_report *rep)
{
	const struct config *oc = r->st->cfg;
	struct worker_call *call = worker_call_new(WORKER_MSG_ADOPT, r->n_workers);
	size_t n = p->n_new;
	int ret = 0;

	ENSURE(call, ENOMEM);
	for (unsigned k = 0; k < r->n_workers; k++) {
		struct worker_msg *m = &call->msgs[k];

		m->adopt.lsn = calloc(n, sizeof(*m->adopt.lsn));
		ENSURE(m->adopt.lsn, ENOMEM);
		m->adopt.n_lsn = n;
		for (size_t i = 0; i < n; i++) {
			m->adopt.lsn[i].fd = p->fds[k * n + i];
			p->fds[k * n + i] = -1; /* the call owns it now */
			if (p->keep[i] >= 0) {
				m->adopt.lsn[i].keep = strdup(oc->listeners[p->keep[i]].name);
				ENSURE(m->adopt.lsn[i].keep, ENOMEM);
			}
		}
		m->adopt.st = state_get(nst);
	}
	worker_call_post(call, r->workers);
	if (worker_call_wait(call, ADOPT_TIMEOUT_MS) < 0)
		config_errors_add(&rep->warnings,
				  "a worker did not answer within %d ms; it "
				  "switches to the new config when it does",
				  ADOPT_TIMEOUT_MS);
	for (unsigned k = 0; k < r->n_workers; k++)
		if (call->msgs[k].ret < 0 && call->msgs[k].ret != -ESRCH)
			config_errors_add(&rep->warnings, "worker %u: %s", k,
					  strerror(-call->msgs[k].ret));
cleanup:
	if (ret < 0)
		config_errors_add(&rep->problems, "%s: %s", r->path, strerror(-ret));
	worker_call_put(call);
	return ret;
}

void reload_log(const char *what, int ret, const struct reload_report *rep)
{
	char kept[512] = "", added[512] = "", removed[512] = "";
	const struct cfg_errors *lists[] = { &rep->kept, &rep->added, &rep->removed };
	char *outs[] = { kept, added, removed };

	for (size_t i = 0; i < rep->warnings.n; i++)
		log_warn("%s: %s", what, rep->warnings.msgs[i]);
	if (ret < 0) {
		for (size_t i = 0; i < rep->problems.n; i++)
			log_err("%s: %s", what, rep->problems.msgs[i]);
		log_err("%s refused (%zu problem%s); still serving the previous config", what,
			rep->problems.n, rep->problems.n == 1 ? "" : "s");
		return;
	}
	for (size_t l = 0; l < 3; l++) {
		size_t len = 0;

		for (size_t i = 0; i < lists[l]->n && len < 500; i++)
			len += (size_t)snprintf(outs[l] + len, 512 - len, "%s%s", i ? "," : "",
						lists[l]->msgs[i]);
		if (!lists[l]->n)
			snprintf(outs[l], 512, "-");
	}
	log_info("%s: done; listeners kept=%s added=%s removed=%s", what, kept, added, removed);
}

int reload_locked(struct reload *r, struct reload_report *rep)
{
	struct state *nst = NULL;
	struct plan p = { 0 };
	bool *drained = NULL;
	int ret = build(r, &nst, rep);

	if (ret < 0)
		goto cleanup;
	warn_restart_only(r->st->cfg, nst->cfg, rep);
	GUARD(plan_make(r, nst->cfg, &p, rep));
	drained = calloc(nst->cfg->n_listeners, sizeof(*drained));
	ENSURE(drained, ENOMEM);
	GUARD(adopt(r, nst, &p, rep));
	state_put(r->st);
	r->st = nst;
	nst = NULL;
	free(r->drained);
	r->drained = drained;
	drained = NULL;
	r->last_change = time(NULL);
	reload_certs_refresh(r);
cleanup:
	if (ret < 0 && rep->problems.n == 0)
		config_errors_add(&rep->problems, "%s: %s", r->path, strerror(-ret));
	stats_reload(ret < 0 ? STATS_RELOAD_FAILED : STATS_RELOAD_OK);
	plan_free(&p);
	free(drained);
	state_put(nst);
	return ret;
}

int reload_run(struct reload *r, struct reload_report *rep)
{
	int ret;

	pthread_mutex_lock(&r->lock);
	ret = reload_locked(r, rep);
	pthread_mutex_unlock(&r->lock);
	reload_log("reload", ret, rep);
	return ret;
}

int reload_cert_del(struct reload *r, const char *name, struct reload_report *rep)
{
	const struct config *cfg;
	bool known = false;
	char **v, *dup = strdup(name);
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	cfg = r->st->cfg;
	for (size_t i = 0; i < cfg->n_certs; i++)
		known |= strcmp(cfg->certs[i].name, name) == 0;
	for (size_t i = 0; i < r->n_deleted; i++)
		ENSURE(strcmp(r->deleted[i], name) != 0, EALREADY);
	ENSURE(known, ENOENT);
	v = realloc(r->deleted, (r->n_deleted + 1) * sizeof(*v));
	ENSURE(dup && v, ENOMEM);
	r->deleted = v;
	r->deleted[r->n_deleted++] = dup;
	dup = NULL;
	ret = reload_locked(r, rep);
	if (ret < 0)
		free(r->deleted[--r->n_deleted]);
cleanup:
	if (ret == -ENOENT)
		config_errors_add(&rep->problems,
				  "no certificate named \"%s\" in the running config", name);
	else if (ret == -EALREADY)
		config_errors_add(&rep->problems, "certificate \"%s\" is already deleted", name);
	pthread_mutex_unlock(&r->lock);
	free(dup);
	reload_log("cert-del", ret, rep);
	return ret;
}

int reload_drain(struct reload *r, const char *listener, unsigned *conns, char *err, size_t errlen)
{
	struct worker_call *call = NULL;
	const struct cfg_listener *l;
	size_t i;
	int ret = 0;

	*conns = 0;
	pthread_mutex_lock(&r->lock);
	l = config_listener_by_name(r->st->cfg, listener);
	if (!l) {
		snprintf(err, errlen, "no listener named \"%s\"", listener);
		ENSURE(false, ENOENT);
	}
	i = (size_t)(l - r->st->cfg->listeners);
	if (r->drained[i]) {
		snprintf(err, errlen, "listener %s is already draining", listener);
		ENSURE(false, EALREADY);
	}
	call = worker_call_new(WORKER_MSG_DRAIN_LISTENER, r->n_workers);
	ENSURE(call, ENOMEM);
	for (unsigned k = 0; k < r->n_workers; k++)
		ENSURE((call->msgs[k].drain.name = strdup(listener)), ENOMEM);
	worker_call_post(call, r->workers);
	if (worker_call_wait(call, DRAIN_TIMEOUT_MS) < 0)
		log_warn("drain %s: a worker did not answer within %d ms", listener,
			 DRAIN_TIMEOUT_MS);
	for (unsigned k = 0; k < r->n_workers; k++)
		*conns += call->msgs[k].drain.conns;
	r->drained[i] = true;
	r->last_change = time(NULL);
	log_info("listener %s: draining on request: no new connections; %u connection%s finish",
		 listener, *conns, *conns == 1 ? "" : "s");
cleanup:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	pthread_mutex_unlock(&r->lock);
	worker_call_put(call);
	return ret;
}

void reload_certs_refresh(struct reload *r)
{
	const struct config *cfg = r->st->cfg;
	char err[512];

	for (size_t i = 0; i < r->n_certs; i++) {
		certstore_cert_free(r->certs[i]);
		free(r->cert_err[i]);
	}
	free(r->certs);
	free(r->cert_err);
	r->n_certs = 0;
	r->certs = calloc(cfg->n_certs, sizeof(*r->certs));
	r->cert_err = calloc(cfg->n_certs, sizeof(*r->cert_err));
	if (!r->certs || !r->cert_err)
		return;
	r->n_certs = cfg->n_certs;
	for (size_t i = 0; i < cfg->n_certs; i++)
		if (certstore_cert_load(cfg->certs[i].cert, cfg->certs[i].key, &r->certs[i], err,
					sizeof(err)) < 0)
			r->cert_err[i] = strdup(err);
}

int reload_init(struct reload *r, const char *path, const struct datapath_caps *caps,
		struct worker *workers, unsigned n_workers, struct state *st)
{
	memset(r, 0, sizeof(*r));
	if (pthread_mutex_init(&r->lock, NULL) != 0)
		return -ENOMEM;
	r->path = strdup(path);
	r->caps = *caps;
	r->workers = workers;
	r->n_workers = n_workers;
	r->st = state_get(st);
	r->drained = calloc(st->cfg->n_listeners, sizeof(*r->drained));
	r->started = r->last_change = time(NULL);
	if (!r->path || !r->drained)
		return -ENOMEM;
	reload_certs_refresh(r);
	return 0;
}

void reload_destroy(struct reload *r)
{
	for (size_t i = 0; i < r->n_certs; i++) {
		certstore_cert_free(r->certs[i]);
		free(r->cert_err[i]);
	}
	free(r->certs);
	free(r->cert_err);
	for (size_t i = 0; i < r->n_deleted; i++)
		free(r->deleted[i]);
	free(r->deleted);
	free(r->drained);
	free(r->path);
	state_put(r->st);
	pthread_mutex_destroy(&r->lock);
}

void reload_report_free(struct reload_report *rep)
{
	config_errors_free(&rep->problems);
	config_errors_free(&rep->warnings);
	config_errors_free(&rep->kept);
	config_errors_free(&rep->added);
	config_errors_free(&rep->removed);
}
