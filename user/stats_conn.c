/* stats_conn.c — see stats_conn.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_data.h"
#include "conn_end.h"
#include "conn_bpf.h"
#include "hostname.h"
#include "state.h"
#include "stats.h"
#include "stats_conn.h"

#define REASON_MAX 80

/* OpenSSL's "error:0A0000C1:SSL routines::no shared cipher" → "no shared cipher": the reason
 * names are a fixed set, so they make bounded metric labels. */
static void reason_text(const char *result, char *out, size_t len)
{
	const char *r = result;

	if (strncmp(result, "error:", 6) == 0 && strrchr(result, ':'))
		r = strrchr(result, ':') + 1;
	snprintf(out, len, "%s", *r ? r : result);
}

void stats_conn_logged(struct conn *c, enum conn_end end, const char *detail)
{
	struct stats_listener *sl = c->l->stats;
	const char *sni;
	char reason[REASON_MAX];
	enum stats_hs r;

	c->acct.tier = (uint8_t)(c->dp ? c->dp->id : KTLSD_TIER_NONE);
	stats_conn_tier(sl, (enum ktlsd_tier)c->acct.tier);
	conn_bpf_open(c);
	if (conn_end_info(end)->backend_failure)
		atomic_fetch_add_explicit(&sl->backend_failures, 1, memory_order_relaxed);
	if (c->tls.ssl) {
		sni = SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name);
		if (sni && !c->acct.sni) {
			char text[HOSTNAME_TEXT_MAX];

			/* NULL when out of memory: shown as no SNI */
			c->acct.sni = strdup(hostname_text(sni, strlen(sni), text, sizeof(text)));
		}
		if (SSL_is_init_finished(c->tls.ssl)) {
			c->acct.version = SSL_get_version(c->tls.ssl);
			c->acct.cipher = SSL_get_cipher_name(c->tls.ssl);
		}
	}
	if (c->l->cfg->protocol != CFG_PROTO_TLS)
		return;
	/* A handshake that completed counts as ok, whatever ended the connection afterwards. */
	r = c->tls.ssl && SSL_is_init_finished(c->tls.ssl) ? STATS_HS_OK : conn_end_info(end)->hs;
	if (r == STATS_HS_OK && c->tls.ssl && SSL_session_reused(c->tls.ssl))
		atomic_fetch_add_explicit(&sl->resumed, 1, memory_order_relaxed);
	reason_text(detail ? detail : conn_end_name(end), reason, sizeof(reason));
	stats_handshake(sl, r, c->hs_ms * 1000, r == STATS_HS_OK ? NULL : reason);
}

static void count_bytes(struct conn *c)
{
	stats_bytes(c->l->stats, c->bytes_c2b - c->acct.c2b, c->bytes_b2c - c->acct.b2c);
	c->acct.c2b = c->bytes_c2b;
	c->acct.b2c = c->bytes_b2c;
}

void stats_conn_flush(struct conn *c)
{
	conn_bpf_sync(c);
	count_bytes(c);
}

void stats_conn_freed(struct conn *c)
{
	count_bytes(c); /* not the entry: it goes now */
	conn_bpf_close(c);
	stats_conn_closed(c->l->stats, (enum ktlsd_tier)c->acct.tier);
	free(c->acct.sni);
	c->acct.sni = NULL;
}
