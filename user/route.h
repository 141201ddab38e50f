/* route — which backend a tls-passthrough connection goes to, by the SNI of its ClientHello
 * (docs/configuration.md, "tls-passthrough listeners and routes"): the listener's "routes"
 * matched with the certificate rules of docs/configuration-certificates.md, the listener's
 * "backend" as the default. Pure functions over the config. */
#ifndef KTLSD_ROUTE_H
#define KTLSD_ROUTE_H

#include <sys/types.h>

#include "config.h"

enum route_match {
	ROUTE_EXACT,	/* a route's name equals the SNI */
	ROUTE_WILDCARD, /* a route's wildcard covers the SNI */
	ROUTE_DEFAULT,	/* SNI sent, no route matched: the listener's backend */
	ROUTE_NO_SNI,	/* no usable SNI: the listener's backend */
	ROUTE_NONE,	/* nothing matched and the listener has no default backend */
};

/* Picks the backend for sni (normalised, or NULL when the client sent none): exact beats
 * wildcard, the longest wildcard suffix wins, ties go to the first route in the config. Returns
 * the index into config.backends, or -1 with ROUTE_NONE (the connection is closed). */
ssize_t route_select(const struct cfg_listener *l, const char *sni, enum route_match *how);

const char *route_match_name(enum route_match m); /* "exact", "wildcard", "default", ... */

#endif
