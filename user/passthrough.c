/* passthrough.c — see passthrough.h. */
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hostname.h"
#include "log.h"
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
		c->sni = strdup(hostname_text(h.name, strlen(h.name), text, sizeof(text)));
	}
	if (backend < 0) {
		*why = "no route for this SNI and no default backend";
		return -1;
	}
	c->backend = &c->st->backends[backend];
	return 1;
}

void passthrough_log(const struct conn *c, const char *result)
{
	log_info("conn peer=%s listener=%s sni=%s route=%s backend=%s server=%s tier=%s%s%s%s "
		 "hs_ms=%llu result=%s",
		 c->peer_text, c->l->cfg->name, c->sni ? c->sni : "-",
		 c->route ? route_match_name((enum route_match)(c->route - 1)) : "-",
		 c->route && c->backend ? c->backend->cfg->name : "-",
		 c->server ? c->server->text : "-", c->dp ? c->dp->name : "-",
		 c->tier_note ? " (" : "", c->tier_note ? c->tier_note : "",
		 c->tier_note ? ")" : "", (unsigned long long)c->hs_ms, result);
}
