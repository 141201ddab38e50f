#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

#include "certstore.h"
#include "errmsg.h"
#include "ktls.h"
#include "log.h"
#include "mtls.h"
#include "tickets.h"
#include "tlsctx.h"

/* Chooses the first protocol of the listener's list that the client offers (server order). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct cfg_listener *l = arg;

	for (size_t i = 0; i < l->n_alpn; i++) {
		size_t len = strlen(l->alpn[i]);

		for (unsigned p = 0; p < inlen; p += 1u + in[p]) {
			if (in[p] == len && p + 1 + len <= inlen &&
			    memcmp(in + p + 1, l->alpn[i], len) == 0) {
				*out = in + p + 1;
				*outlen = in[p];
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no overlap is a no_application_protocol */
}

/* The listener's certificates in config order, owned by the SSL_CTX (freed with it). */
struct tlsctx_certs {
	size_t n;
	struct certstore_cert *certs[];
};

static int certs_index = -1;  /* SSL_CTX ex_data: struct tlsctx_certs */
static int chosen_index = -1; /* SSL ex_data: chosen certificate index + 1 */
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void certs_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct tlsctx_certs *set = ptr;

	for (size_t i = 0; set && i < set->n; i++)
		certstore_cert_free(set->certs[i]);
	free(set);
}

static void index_init(void)
{
	certs_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, certs_free);
	chosen_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Certificate selection (docs/configuration-certificates.md, "How the certificate is chosen")
 * happens here, before OpenSSL picks anything. */
static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
	const struct tlsctx_certs *set = arg;
	int chosen = -1;
	int r = certstore_on_client_hello(ssl, set->certs, set->n, al, &chosen);

	if (chosen >= 0)
		SSL_set_ex_data(ssl, chosen_index, (void *)(intptr_t)(chosen + 1));
	return r;
}

int tlsctx_chosen_cert(SSL *ssl)
{
	return chosen_index < 0 ? -1 : (int)(intptr_t)SSL_get_ex_data(ssl, chosen_index) - 1;
}

static int load_certs(SSL_CTX *ctx, const struct config *cfg, size_t li, struct cfg_errors *errs)
{
	const struct cfg_listener *l = &cfg->listeners[li];
	struct tlsctx_certs *set = calloc(1, sizeof(*set) + l->n_certs * sizeof(set->certs[0]));
	char why[512];
	int ret = 0;

	ENSURE(set, ENOMEM);
	for (size_t i = 0; i < l->n_certs; i++) {
		const struct cfg_cert *c = &cfg->certs[l->certs[i]];
		struct certstore_cert *cert = NULL;

		if (certstore_cert_load(c->cert, c->key, &cert, why, sizeof(why)) < 0) {
			config_errors_add(errs, "%s: certificates.%s: %s", cfg->path, c->name, why);
			ret = -EINVAL;
			continue;
		}
		set->certs[set->n++] = cert;
		if (certstore_cert_check_domains(cert, (const char *const *)c->domains,
						 c->n_domains, why, sizeof(why)) < 0) {
			config_errors_add(errs, "%s: certificates.%s.domains: %s", cfg->path,
					  c->name, why);
			ret = -EINVAL;
		}
		if (certstore_cert_check_ctx(ctx, cert, why, sizeof(why)) < 0) {
			config_errors_add(errs, "%s: listeners[%zu].certificates[%zu]: %s",
					  cfg->path, li, i, why);
			ret = -EINVAL;
		}
		if (certstore_cert_is_expired(cert, time(NULL)))
			log_warn("certificate %s (%s) expired; served anyway (expiry is not "
				 "enforced): replace it",
				 c->name, c->cert);
	}
	/* One certificate: the context holds it, so the ClientHello callback, which still checks
	 * that the client can use it, need not install it in every connection's SSL. */
	if (ret == 0 && set->n == 1 && certstore_apply_ctx(ctx, set->certs[0]) < 0) {
		config_errors_add(errs, "%s: listeners[%zu].certificates[0]: %s", cfg->path, li,
				  errmsg_ossl_reason(why, sizeof(why)));
		ret = -EINVAL;
	}
	/* The set belongs to the context from here, whatever happened above. */
	SSL_CTX_set_ex_data(ctx, certs_index, set);
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, set);
cleanup:
	return ret;
}

static int setup_client_auth(SSL_CTX *ctx, const struct config *cfg, size_t li,
			     struct cfg_errors *errs)
{
	const struct cfg_listener *l = &cfg->listeners[li];
	const struct cfg_ca *ca;
	char why[512];

	if (l->client_auth.mode == CFG_CAUTH_NONE)
		return 0;
	ca = &cfg->cas[l->client_auth.ca];
	if (mtls_configure(ctx, (enum mtls_mode)l->client_auth.mode, ca->file, ca->crl,
			   (int)l->client_auth.depth, why, sizeof(why)) < 0) {
		config_errors_add(errs, "%s: ca_certificates.%s: %s", cfg->path, ca->name, why);
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

	pthread_once(&index_once, index_init);
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
	/* Resumption: stateless tickets only (tickets.h), never a server-side session cache. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (!l->session_resumption) {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
	} else {
		GUARD(tickets_attach(ctx, cfg, index, errs));
	}
	if (l->n_alpn)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, (void *)l);
	/* The key capture serves the kernel handoff and ktlsd's own record layer alike. */
	if (ktls_capture_attach(ctx) < 0) {
		config_errors_add(errs, "%s: listeners[%zu]: cannot prepare the key capture",
				  cfg->path, index);
		ENSURE(false, ENOMEM);
	}
	GUARD(load_certs(ctx, cfg, index, errs));
	GUARD(setup_client_auth(ctx, cfg, index, errs));
	*out = ctx;
	ctx = NULL;
cleanup:
	SSL_CTX_free(ctx);
	return ret;
}
