/* reload — the running configuration and every change to it: reload (SIGHUP and `ktlsctl
 * reload`, one code path), cert-set, cert-del and drain.
 *
 * A change builds and validates the complete new state first, exactly as startup does (config,
 * certificates, policies, backends, datapath), then opens the listening sockets of listeners it
 * adds, so that a bind error refuses the reload before anything changed. Only then does every
 * worker adopt the new state between two completions: connections already established keep the
 * state they started with, listeners whose bind address stays keep their sockets and their
 * in-flight accept (no refused connection, no dropped backlog), removed listeners stop accepting
 * and their connections finish. A refused change leaves everything as it was and says why. */
#ifndef KTLSD_RELOAD_H
#define KTLSD_RELOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "config.h"
#include "datapath.h"
#include "state.h"
#include "worker.h"

struct certstore_cert;

struct reload {
	pthread_mutex_t lock; /* one change at a time; guards every field below */
	char *path;	      /* the config file */
	struct datapath_caps caps;
	struct worker *workers;
	unsigned n_workers;
	struct state *st; /* what new connections get */
	bool *drained;	  /* by listener index of st: `ktlsctl drain` stopped it */
	char **deleted;	  /* certificate names cert-del took out of every listener */
	size_t n_deleted;
	/* Certificates of st->cfg->certs as loaded for `ktlsctl certs` and the metrics: NULL
	 * where loading failed, with the reason in cert_err. */
	struct certstore_cert **certs;
	char **cert_err;
	size_t n_certs;
	time_t started, last_change;
};

/* What a change did or why it was refused; names are listener names. */
struct reload_report {
	struct cfg_errors problems; /* why it was refused, each naming the file and JSON path */
	struct cfg_errors warnings;
	struct cfg_errors kept, added, removed;
};

/* Takes a reference on st; the workers must already serve it. */
int reload_init(struct reload *r, const char *path, const struct datapath_caps *caps,
		struct worker *workers, unsigned n_workers, struct state *st) __must_check;
void reload_destroy(struct reload *r);
void reload_report_free(struct reload_report *rep);

/* Each returns 0 or a negative errno with rep->problems saying why; all log what they did. */
int reload_run(struct reload *r, struct reload_report *rep) __must_check;
/* Replaces the files of certificate name (the paths the config gives it) with the PEM texts,
 * after checking them, and reloads; on any failure the old files are put back. */
int reload_cert_set(struct reload *r, const char *name, const char *cert_pem, const char *key_pem,
		    struct reload_report *rep) __must_check;
/* Takes certificate name out of every listener until the next cert-set of it or a restart (the
 * config file is not edited); refused when a listener would be left without a certificate. */
int reload_cert_del(struct reload *r, const char *name, struct reload_report *rep) __must_check;
/* Stops accepting on a listener on every worker; its connections finish. A reload opens it
 * again if the config still has it. *conns = its connections at the time. */
int reload_drain(struct reload *r, const char *listener, unsigned *conns, char *err,
		 size_t errlen) __must_check;

/* Internal to reload*.c: the reload itself, with r->lock held. */
int reload_locked(struct reload *r, struct reload_report *rep);
void reload_log(const char *what, int ret, const struct reload_report *rep);
void reload_certs_refresh(struct reload *r);

#endif
