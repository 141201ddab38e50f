/* policy — named security policies (protocol versions, TLS ≤1.2 ciphers in server preference
 * order, TLS 1.3 suites, groups) and their application to an SSL_CTX. The built-in ones are every
 * ELBSecurityPolicy-* of data/elb-policies.json; a config may add its own under
 * "security_policies". */
#ifndef KTLSD_POLICY_H
#define KTLSD_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "config.h"

struct policy {
	char *name;
	int min_version; /* TLS1_VERSION … TLS1_3_VERSION */
	int max_version;
	unsigned long no_versions; /* SSL_OP_NO_* for versions inside [min, max] left out */
	char *ciphers;		   /* OpenSSL cipher list, "" when the policy has none */
	char *ciphersuites;	   /* TLS 1.3 suites, "" when none */
	char *groups;		   /* NULL: OpenSSL's default */
	bool weak;		   /* allows TLS < 1.2: needs security level 0 */
	char **unavailable;	   /* ciphers this OpenSSL cannot provide (3DES on Debian) */
	size_t n_unavailable;
};

/* Builds the policy called name from the config's custom policies or the built-in table. Returns
 * 0, -ENOENT for an unknown name, or -EINVAL with a reason in err. */
int policy_lookup(const struct config *cfg, const char *name, struct policy **out, char *err,
		  size_t errlen) __must_check;
void policy_free(struct policy *p); /* accepts NULL */
/* Versions, ciphers, suites, groups, security level, server preference, no renegotiation. */
int policy_apply(SSL_CTX *ctx, const struct policy *p, char *err, size_t errlen) __must_check;
/* Calls fn for every built-in policy name, in table order. */
void policy_foreach_builtin(void (*fn)(const char *name, void *arg), void *arg);
const char *policy_version_name(int version);

#endif
