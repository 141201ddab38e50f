#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "backend_tls.h"
#include "conn_data.h"
#include "conn_bio.h"
#include "errmsg.h"
#include "hostname.h"
#include "policy.h"
#include "state.h"

int backend_tls_start(struct conn *c, SSL_CTX *ctx)
{
	const char *sni = c->l->cfg->backend_tls.sni;
	int ret = 0;

	c->btls.ssl = SSL_new(ctx);
	ENSURE(c->btls.ssl, ENOMEM);
	GUARD(conn_bio_attach(c, c->btls.ssl, true));
	SSL_set_app_data(c->btls.ssl, c);
	/* RFC 6066 §3: no IP literal in SNI (the name check above covers it). */
	if (sni && !hostname_is_ip(sni))
		ENSURE(SSL_set_tlsext_host_name(c->btls.ssl, sni) == 1, ENOMEM);
	SSL_set_connect_state(c->btls.ssl);
cleanup:
	if (ret < 0) {
		SSL_free(c->btls.ssl);
		c->btls.ssl = NULL;
	}
	return ret;
}

int backend_tls_step(struct conn *c, const char **why, enum stats_btls *kind)
{
	static __thread char text[320];
	int r = SSL_do_handshake(c->btls.ssl);
	int err;
	long vr;
	char reason[256];

	if (r == 1)
		return 1;
	err = SSL_get_error(c->btls.ssl, r);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return 0;
	vr = SSL_get_verify_result(c->btls.ssl);
	if (vr != X509_V_OK) {
		*kind = STATS_BTLS_VERIFY;
		snprintf(text, sizeof(text), "backend certificate verify failed: %s",
			 X509_verify_cert_error_string(vr));
		ERR_clear_error();
	} else if (err == SSL_ERROR_SSL && ERR_peek_error()) {
		*kind = STATS_BTLS_HANDSHAKE;
		snprintf(text, sizeof(text), "backend TLS handshake failed: %s",
			 errmsg_ossl_reason(reason, sizeof(reason)));
	} else {
		*kind = STATS_BTLS_HANDSHAKE;
		snprintf(text, sizeof(text), "backend TLS handshake failed: %s",
			 (c->flags & CF_BIN_EOF) ? "the backend closed the connection"
						 : "SSL error");
		ERR_clear_error();
	}
	*why = text;
	return -EPROTO;
}
