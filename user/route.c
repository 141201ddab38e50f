/* route.c — see route.h. The matching itself is hostname_match(), shared with certificate
 * selection, so a name routes to the backend whose certificate ktlsd would have chosen for it. */
#include <string.h>

#include "hostname.h"
#include "route.h"

ssize_t route_select(const struct cfg_listener *l, const char *sni, enum route_match *how)
{
	ssize_t best = -1;
	int best_score = 0;

	for (size_t i = 0; sni && i < l->n_routes; i++) {
		int s = hostname_match(l->routes[i].sni, sni);

		if (s > best_score) {
			best_score = s;
			best = (ssize_t)i;
		}
	}
	if (best >= 0) {
		*how = best_score == HOSTNAME_MATCH_EXACT ? ROUTE_EXACT : ROUTE_WILDCARD;
		return (ssize_t)l->routes[best].backend;
	}
	if (!l->backend_name) {
		*how = ROUTE_NONE;
		return -1;
	}
	*how = sni ? ROUTE_DEFAULT : ROUTE_NO_SNI;
	return (ssize_t)l->backend;
}

const char *route_match_name(enum route_match m)
{
	static const char *const names[] = { "exact", "wildcard", "default", "no-sni", "none" };

	return (unsigned)m < sizeof(names) / sizeof(names[0]) ? names[m] : "?";
}
