#include <errno.h>
#include <string.h>

#include <openssl/err.h>

#include "log.h"
#include "tlsctx.h"

/* Chooses the first protocol of the listener's list that the client offers (server order). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct cfg_listener *l = arg;

	for (size_t i = 0; i < l->n_alpn; i++) {
		size_t len = strlen(l->alpn[i]);

		for (unsigned p = 0; p < inlen; p += 1u + in[p]) {
			if (in[p] == len && p + 1 + len <= inlen && memcmp(in + p + 1, l->alpn[i], len) == 0) {
				*out = in + p + 1;
				*outlen = in[p];
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no overlap is a no_application_protocol */
}

static void ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "unknown error");
	ERR_clear_error();
}

static int load_cert(SSL_CTX *ctx, const struct config *cfg, size_t li, size_t ci,
		     struct cfg_errors *errs)
{
	const struct cfg_cert *c = &cfg->certs[cfg->listeners[li].certs[ci]];
	char why[256];

	if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
		ossl_reason(why, sizeof(why));
		config_errors_add(errs, "%s: certificates.%s.cert: %s: cannot load certificate (%s)",
				  cfg->path, c->name, c->cert, why);
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
		ossl_reason(why, sizeof(why));
		config_errors_add(errs, "%s: certificates.%s.key: %s: cannot load private key (%s)",
				  cfg->path, c->name, c->key, why);
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		config_errors_add(errs, "%s: certificates.%s.key: %s: does not match certificate %s",
				  cfg->path, c->name, c->key, c->cert);
		return -EINVAL;
	}
	return 0;
}

int tlsctx_build(const struct config *cfg, size_t index, const struct policy *pol, SSL_CTX **out,
		 struct cfg_errors *errs)
{
	const struct cfg_listener *l = &cfg->listeners[index];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[256];
	int ret = 0;

	ENSURE(ctx, ENOMEM);
	if (policy_apply(ctx, pol, why, sizeof(why)) < 0) {
		config_errors_add(errs, "%s: listeners[%zu].security_policy: %s", cfg->path, index,
				  why);
		ENSURE(false, EINVAL);
	}
	/* Memory BIOs: partial writes and a moving buffer keep SSL_write from pinning ours;
	 * released buffers keep idle connections small. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	/* A TCP FIN without close_notify ends the client's direction like close_notify would:
	 * the backend sees the same half-close it would see without ktlsd. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (!l->session_resumption) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	if (l->n_alpn)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, (void *)l);
	GUARD(load_cert(ctx, cfg, index, 0, errs));
	*out = ctx;
	ctx = NULL;
cleanup:
	SSL_CTX_free(ctx);
	return ret;
}
