/* worker_msg — the workers' mailbox: calls from other threads (reload, ktlsctl) posted to every
 * worker and answered on each worker's own thread, and the copy of connections for `ktlsctl
 * connections` (a connection is only ever touched by its worker). */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

struct worker_call *worker_call_new(enum worker_msg_type type, size_t n)
{
	struct worker_call *call = calloc(1, sizeof(*call) + n * sizeof(call->msgs[0]));
	pthread_condattr_t attr;

	if (!call)
		return NULL;
	pthread_mutex_init(&call->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&call->cond, &attr);
	pthread_condattr_destroy(&attr);
	atomic_init(&call->refs, 1);
	call->type = type;
	call->n = n;
	for (size_t i = 0; i < n; i++)
		call->msgs[i].call = call;
	return call;
}

static void msg_free_payload(struct worker_call *call, struct worker_msg *m)
{
	switch (call->type) {
	case WORKER_MSG_ADOPT:
		state_put(m->adopt.st);
		for (size_t j = 0; m->adopt.lsn && j < m->adopt.n_lsn; j++) {
			free(m->adopt.lsn[j].keep);
			if (m->adopt.lsn[j].fd >= 0)
				close(m->adopt.lsn[j].fd);
		}
		free(m->adopt.lsn);
		break;
	case WORKER_MSG_DRAIN_LISTENER:
		free(m->drain.name);
		break;
	case WORKER_MSG_CONNS:
		free(m->conns.out);
		break;
	}
}

void worker_call_put(struct worker_call *call)
{
	if (!call || atomic_fetch_sub(&call->refs, 1) != 1)
		return;
	for (size_t i = 0; i < call->n; i++)
		msg_free_payload(call, &call->msgs[i]);
	free(call->filter.listener);
	free(call->filter.sni);
	free(call->filter.tier);
	pthread_cond_destroy(&call->cond);
	pthread_mutex_destroy(&call->lock);
	free(call);
}

static void msg_done(struct worker_msg *m)
{
	struct worker_call *call = m->call;

	pthread_mutex_lock(&call->lock);
	call->pending--;
	pthread_cond_broadcast(&call->cond);
	pthread_mutex_unlock(&call->lock);
	worker_call_put(call);
}

static void post(struct worker *w, struct worker_msg *m)
{
	uint64_t one = 1;
	bool closed;

	pthread_mutex_lock(&w->mbox_lock);
	closed = w->mbox_closed;
	if (!closed) {
		m->next = w->mbox;
		w->mbox = m;
	}
	pthread_mutex_unlock(&w->mbox_lock);
	if (closed) {
		m->ret = -ESRCH;
		msg_done(m);
	} else if (write(w->wake_fd, &one, sizeof(one)) < 0) {
		log_err("worker %u: wake: %s", w->id, strerror(errno));
	}
}

void worker_call_post(struct worker_call *call, struct worker *workers)
{
	pthread_mutex_lock(&call->lock);
	call->pending = (unsigned)call->n;
	pthread_mutex_unlock(&call->lock);
	atomic_fetch_add(&call->refs, (int)call->n);
	for (size_t i = 0; i < call->n; i++)
		post(&workers[i], &call->msgs[i]);
}

int worker_call_wait(struct worker_call *call, unsigned timeout_ms)
{
	struct timespec ts;
	int r = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&call->lock);
	while (call->pending && r == 0)
		r = pthread_cond_timedwait(&call->cond, &call->lock, &ts);
	r = call->pending ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&call->lock);
	return r;
}

/* ---- worker side ---- */

/* `ktlsctl connections` shows four phases (docs/control.md): the states grouped. */
static const char *const phase_names[CONN_STATE_N] = {
	[CONN_HANDSHAKE] = "handshake",	   [CONN_HELLO] = "handshake",
	[CONN_CONNECTING] = "connecting",  [CONN_BACKEND_TLS] = "connecting",
	[CONN_TIER_SELECT] = "forwarding", [CONN_FORWARDING] = "forwarding",
	[CONN_FLUSH] = "closing",	   [CONN_CLOSING] = "closing",
};

static const char *conn_sni(const struct conn *c)
{
	if (c->acct.sni)
		return c->acct.sni;
	return c->tls.ssl ? SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

static void conn_info(const struct worker *w, const struct conn *c, const char *sni,
		      const char *tier, struct worker_conn_info *o)
{
	bool done = c->tls.ssl && SSL_is_init_finished(c->tls.ssl);

	o->worker = w->id;
	snprintf(o->listener, sizeof(o->listener), "%s", c->l->cfg->name);
	snprintf(o->peer, sizeof(o->peer), "%s", c->peer_text);
	snprintf(o->sni, sizeof(o->sni), "%s", sni ? sni : "");
	snprintf(o->backend, sizeof(o->backend), "%s", c->server ? c->server->text : "");
	o->phase = c->state < CONN_STATE_N ? phase_names[c->state] : "?";
	o->tier = tier;
	o->version = c->acct.version ? c->acct.version : done ? SSL_get_version(c->tls.ssl) : NULL;
	o->cipher = c->acct.cipher ? c->acct.cipher : done ? SSL_get_cipher_name(c->tls.ssl) : NULL;
	o->c2b = c->bytes_c2b;
	o->b2c = c->bytes_b2c;
	o->age_ms = w->env.now_ms - c->start_ms;
	o->idle_ms = w->env.now_ms - c->active_ms;
}

static void conns_copy(struct worker *w, struct worker_msg *m)
{
	const struct worker_conn_filter *f = &m->call->filter;

	for (const struct conn *c = w->env.conns; c; c = c->next) {
		const char *sni = conn_sni(c), *tier = c->dp ? c->dp->name : "none";

		if (f->listener && strcmp(c->l->cfg->name, f->listener) != 0)
			continue;
		if (f->tier && strcmp(tier, f->tier) != 0)
			continue;
		if (f->sni && (!sni || fnmatch(f->sni, sni, FNM_CASEFOLD) != 0))
			continue;
		if (m->conns.n < m->conns.cap)
			conn_info(w, c, sni, tier, &m->conns.out[m->conns.n++]);
		m->conns.matched++;
	}
}

static void handle(struct worker *w, struct worker_msg *m)
{
	switch (m->call->type) {
	case WORKER_MSG_ADOPT:
		worker_adopt(w, m);
		break;
	case WORKER_MSG_DRAIN_LISTENER:
		worker_drain_listener(w, m);
		break;
	case WORKER_MSG_CONNS:
		conns_copy(w, m);
		break;
	}
}

/* Takes the whole mailbox, oldest first. */
static struct worker_msg *take_all(struct worker *w, bool close)
{
	struct worker_msg *m, *next, *fifo = NULL;

	pthread_mutex_lock(&w->mbox_lock);
	m = w->mbox;
	w->mbox = NULL;
	if (close)
		w->mbox_closed = true;
	pthread_mutex_unlock(&w->mbox_lock);
	for (; m; m = next) {
		next = m->next;
		m->next = fifo;
		fifo = m;
	}
	return fifo;
}

void worker_mbox_run(struct worker *w)
{
	struct worker_msg *m, *next;

	for (m = take_all(w, false); m; m = next) {
		next = m->next; /* msg_done may free m */
		handle(w, m);
		msg_done(m);
	}
}

void worker_mbox_close(struct worker *w)
{
	struct worker_msg *m, *next;

	for (m = take_all(w, true); m; m = next) {
		next = m->next;
		m->ret = -ESRCH;
		msg_done(m);
	}
}
