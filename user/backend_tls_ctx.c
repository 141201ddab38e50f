/* backend_tls_ctx.c — see backend_tls_ctx.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/x509v3.h>

#include "backend_tls_ctx.h"
#include "errmsg.h"
#include "hostname.h"
#include "log.h"
#include "policy.h"

static int load_ca(SSL_CTX *ctx, const struct config *cfg, size_t index, const char *file,
		   struct cfg_errors *errs)
{
	char why[256];

	if (access(file, R_OK) < 0) {
		config_errors_add(errs, "%s: listeners[%zu].backend_tls.ca_file: %s: %s", cfg->path,
				  index, file, strerror(errno));
		return -EINVAL;
	}
	if (SSL_CTX_load_verify_file(ctx, file) != 1) {
		config_errors_add(errs,
				  "%s: listeners[%zu].backend_tls.ca_file: %s: no usable CA "
				  "certificate (%s)",
				  cfg->path, index, file, errmsg_ossl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	return 0;
}

int backend_tls_ctx_build(const struct config *cfg, size_t index, SSL_CTX **out,
			  struct cfg_errors *errs)
{
	const struct cfg_listener *l = &cfg->listeners[index];
	struct policy *pol = NULL;
	SSL_CTX *ctx = NULL;
	X509_VERIFY_PARAM *param;
	const char *sni = l->backend_tls.sni;
	char why[256];
	int ret = 0;

	*out = NULL;
	if (!l->backend_tls.enabled || l->protocol != CFG_PROTO_TLS)
		return 0;
	if (policy_lookup(cfg, l->backend_tls.security_policy, &pol, why, sizeof(why)) < 0) {
		config_errors_add(errs, "%s: listeners[%zu].backend_tls.security_policy: %s",
				  cfg->path, index, why);
		ENSURE(false, EINVAL);
	}
	for (size_t k = 0; k < pol->n_unavailable; k++)
		log_warn("%s: listeners[%zu].backend_tls.security_policy: %s: cipher %s is not "
			 "available in this OpenSSL build and is left out",
			 cfg->path, index, pol->name, pol->unavailable[k]);
	ctx = SSL_CTX_new(TLS_client_method());
	ENSURE(ctx, ENOMEM);
	if (policy_apply(ctx, pol, why, sizeof(why)) < 0) {
		config_errors_add(errs, "%s: listeners[%zu].backend_tls.security_policy: %s",
				  cfg->path, index, why);
		ENSURE(false, EINVAL);
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				  SSL_MODE_RELEASE_BUFFERS);
	/* A backend that closes without close_notify ends its direction, as a FIN does without
	 * TLS; no resumption towards targets (docs/configuration.md, "Backend TLS"), so no session
	 * is ever kept. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (l->backend_tls.verify) {
		GUARD(load_ca(ctx, cfg, index, l->backend_tls.ca_file, errs));
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		param = SSL_CTX_get0_param(ctx);
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (sni && hostname_is_ip(sni))
			ENSURE(X509_VERIFY_PARAM_set1_ip_asc(param, sni) == 1, ENOMEM);
		else if (sni)
			ENSURE(X509_VERIFY_PARAM_set1_host(param, sni, 0) == 1, ENOMEM);
		else
			log_warn("%s: listeners[%zu].backend_tls: verify is on but no sni is set: "
				 "the backend's chain is checked, not its name",
				 cfg->path, index);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	*out = ctx;
	ctx = NULL;
cleanup:
	SSL_CTX_free(ctx);
	policy_free(pol);
	return ret;
}
