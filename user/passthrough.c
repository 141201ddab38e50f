/* passthrough.c — see passthrough.h. */
#include <stdlib.h>
#include <string.h>

#include "conn_data.h"
#include "hostname.h"
#include "passthrough.h"
#include "route.h"
#include "sni.h"
#include "state.h"

int passthrough_step(struct conn *c, const char **why)
{
	const struct cfg_listener *l = c->l->cfg;
	enum route_match how;
	struct sni_hello h;
	ssize_t backend;

	switch (
	    sni_parse(c->cin.data ? c->cin.data + c->cin.head : NULL, buf_len(&c->cin), &h, why)) {
	case SNI_NEED_MORE:
		if (!(c->flags & CF_CIN_EOF))
			return 0;
		*why = "client closed before its ClientHello was complete";
		return -1;
	case SNI_DONE:
		break;
	case SNI_NOT_TLS:
	case SNI_MALFORMED:
	case SNI_TOO_BIG:
		return -1; /* *why names the problem */
	}
	backend = route_select(l, h.has_sni ? h.name : NULL, &how);
	c->route = (uint8_t)(how + 1);
	if (h.has_sni) {
		char text[HOSTNAME_TEXT_MAX];

		/* Printable, but quotes or '=' could still mislead a log parser: shown escaped */
		c->acct.sni = strdup(hostname_text(h.name, strlen(h.name), text, sizeof(text)));
	}
	if (backend < 0) {
		*why = "no route for this SNI and no default backend";
		return -1;
	}
	c->backend = &c->st->backends[backend];
	return 1;
}
