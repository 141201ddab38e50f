/* conn_log.c — see conn_log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conn_data.h"
#include "conn_log.h"
#include "hostname.h"
#include "mtls.h"
#include "ratelog.h"
#include "route.h"
#include "state.h"
#include "tlsctx.h"

void conn_log_emit(const struct conn *c, enum log_level lvl, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_emit(lvl, "conn peer=%s listener=%s: %s", c->peer_text, c->l->cfg->name, msg);
}

void conn_log_renegotiation(struct conn *c)
{
	static struct ratelog all;
	uint64_t left_out;

	/* The first attempt of each connection, and no more than one line a second in all: a
	 * client may send a ClientHello in every record. */
	if (c->tls.renegs < UINT8_MAX)
		c->tls.renegs++;
	if (c->tls.renegs != 1 || !ratelog_allow(&all, c->env->now_ms, &left_out))
		return;
	conn_log(c, LOG_INFO, "client attempted renegotiation: refused%s",
		 left_out ? " (and more on other connections, not logged)" : "");
}

static void log_passthrough(const struct conn *c, const char *result)
{
	log_info("conn peer=%s listener=%s sni=%s route=%s backend=%s server=%s tier=%s%s%s%s "
		 "hs_ms=%llu result=%s",
		 c->peer_text, c->l->cfg->name, c->acct.sni ? c->acct.sni : "-",
		 c->route ? route_match_name((enum route_match)(c->route - 1)) : "-",
		 c->route && c->backend ? c->backend->cfg->name : "-",
		 c->server ? c->server->text : "-", c->dp ? c->dp->name : "-",
		 c->tier_note ? " (" : "", c->tier_note ? c->tier_note : "",
		 c->tier_note ? ")" : "", (unsigned long long)c->hs_ms, result);
}

void conn_log_handshake(const struct conn *c, const char *result)
{
	const struct cfg_listener *l = c->l->cfg;
	const char *sni = NULL, *proto = "-", *cipher = "-", *cert = "-";
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	char client[256] = "-", btls[128] = "", sni_text[HOSTNAME_TEXT_MAX];
	const char *resumed = "-";

	if (l->protocol == CFG_PROTO_PASSTHROUGH) {
		log_passthrough(c, result);
		return;
	}
	if (log_threshold < LOG_INFO)
		return;
	if (c->tls.ssl) {
		sni = SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name);
		if (SSL_is_init_finished(c->tls.ssl)) {
			proto = SSL_get_version(c->tls.ssl);
			cipher = SSL_get_cipher_name(c->tls.ssl);
			SSL_get0_alpn_selected(c->tls.ssl, &alpn, &alpn_len);
			int chosen = tlsctx_chosen_cert(c->tls.ssl);

			if (chosen >= 0)
				cert = c->st->cfg->certs[l->certs[chosen]].name;
			resumed = SSL_session_reused(c->tls.ssl) ? "yes" : "no";
		}
	}
	if (c->btls.ssl && SSL_is_init_finished(c->btls.ssl))
		snprintf(btls, sizeof(btls), " backend_tls=%s/%s", SSL_get_version(c->btls.ssl),
			 SSL_get_cipher_name(c->btls.ssl));
	if (c->tls.ssl && l->client_auth.mode != CFG_CAUTH_NONE &&
	    mtls_peer_subject(c->tls.ssl, client, sizeof(client)) < 0)
		snprintf(client, sizeof(client), "- (%s)", mtls_verify_reason(c->tls.ssl));
	if (sni) /* any byte but NUL, as the client sent it */
		sni = hostname_text(sni, strlen(sni), sni_text, sizeof(sni_text));
	log_info(
	    "conn peer=%s listener=%s sni=%s cert=%s proto=%s cipher=%s alpn=%.*s client=\"%s\" "
	    "tier=%s%s%s%s backend=%s%s hs_ms=%llu resumed=%s result=%s",
	    c->peer_text, l->name, sni ? sni : "-", cert, proto, cipher,
	    alpn_len ? (int)alpn_len : 1, alpn_len ? (const char *)alpn : "-", client,
	    c->dp ? c->dp->name : "-", c->tier_note ? " (" : "", c->tier_note ? c->tier_note : "",
	    c->tier_note ? ")" : "", c->server ? c->server->text : "-", btls,
	    (unsigned long long)c->hs_ms, resumed, result);
}
