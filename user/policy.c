#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "policy.h"

extern const char policy_data_json[];

static json_t *builtin; /* "policies" object of the table, parsed once */
static json_t *aliases;

static int builtin_load(void)
{
	static json_t *root;
	json_error_t jerr;

	if (builtin)
		return 0;
	root = json_loads(policy_data_json, 0, &jerr);
	if (!root)
		return -EINVAL;
	builtin = json_object_get(root, "policies");
	aliases = json_object_get(root, "aliases");
	return builtin ? 0 : -EINVAL;
}

static const struct {
	const char *name;
	int version;
} versions[] = {
	{ "TLSv1", TLS1_VERSION },
	{ "TLSv1.1", TLS1_1_VERSION },
	{ "TLSv1.2", TLS1_2_VERSION },
	{ "TLSv1.3", TLS1_3_VERSION },
};

static const unsigned long version_ops[] = { SSL_OP_NO_TLSv1, SSL_OP_NO_TLSv1_1, SSL_OP_NO_TLSv1_2,
					     SSL_OP_NO_TLSv1_3 };

const char *policy_version_name(int version)
{
	for (size_t i = 0; i < ARRAY_SIZE(versions); i++)
		if (versions[i].version == version)
			return versions[i].name;
	return "unknown";
}

/* Joins strings with ':' (OpenSSL list syntax). */
static char *join(const char *const *items, size_t n)
{
	size_t len = 1;
	char *out;

	for (size_t i = 0; i < n; i++)
		len += strlen(items[i]) + 1;
	out = calloc(1, len);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, ":");
		strcat(out, items[i]);
	}
	return out;
}

/* True when this OpenSSL (at security level 0) knows the TLS ≤1.2 cipher. */
static bool cipher_available(const char *name)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char list[128];
	bool ok;

	if (!ctx)
		return false;
	snprintf(list, sizeof(list), "%s:@SECLEVEL=0", name);
	ok = SSL_CTX_set_cipher_list(ctx, list) == 1;
	SSL_CTX_free(ctx);
	return ok;
}

static int build(const char *name, const char *const *vers, size_t n_vers,
		 const char *const *ciphers, size_t n_ciphers, const char *const *suites,
		 size_t n_suites, const char *const *groups, size_t n_groups, struct policy **out,
		 char *err, size_t errlen)
{
	struct policy *p = calloc(1, sizeof(*p));
	const char **usable = NULL;
	size_t n_usable = 0;
	unsigned mask = 0;
	int ret = 0;

	ENSURE(p, ENOMEM);
	p->name = strdup(name);
	ENSURE(p->name, ENOMEM);
	for (size_t i = 0; i < n_vers; i++) {
		size_t v = 0;

		while (v < ARRAY_SIZE(versions) && strcmp(versions[v].name, vers[i]) != 0)
			v++;
		if (v == ARRAY_SIZE(versions)) {
			snprintf(err, errlen,
				 "unknown protocol version \"%s\" (TLSv1, TLSv1.1, "
				 "TLSv1.2 or TLSv1.3)",
				 vers[i]);
			ENSURE(false, EINVAL);
		}
		mask |= 1u << v;
	}
	if (!mask) {
		snprintf(err, errlen, "no protocol versions");
		ENSURE(false, EINVAL);
	}
	p->min_version = versions[__builtin_ctz(mask)].version;
	p->max_version = versions[31 - __builtin_clz(mask)].version;
	for (unsigned v = (unsigned)__builtin_ctz(mask); v < 32u - (unsigned)__builtin_clz(mask);
	     v++)
		if (!(mask & (1u << v)))
			p->no_versions |= version_ops[v];
	p->weak = p->min_version < TLS1_2_VERSION;

	usable = calloc(n_ciphers + 1, sizeof(*usable));
	p->unavailable = calloc(n_ciphers + 1, sizeof(*p->unavailable));
	ENSURE(usable && p->unavailable, ENOMEM);
	for (size_t i = 0; i < n_ciphers; i++) {
		if (cipher_available(ciphers[i]))
			usable[n_usable++] = ciphers[i];
		else
			ENSURE((p->unavailable[p->n_unavailable++] = strdup(ciphers[i])), ENOMEM);
	}
	if (mask & 0x7 && n_usable == 0) {
		snprintf(err, errlen, "allows TLS ≤ 1.2 but none of its ciphers is available");
		ENSURE(false, EINVAL);
	}
	if (mask & 0x8 && n_suites == 0) {
		snprintf(err, errlen, "allows TLSv1.3 but lists no \"ciphersuites\"");
		ENSURE(false, EINVAL);
	}
	p->ciphers = join(usable, n_usable);
	p->ciphersuites = join(suites, n_suites);
	ENSURE(p->ciphers && p->ciphersuites, ENOMEM);
	if (n_groups)
		ENSURE((p->groups = join(groups, n_groups)), ENOMEM);
	*out = p;
	p = NULL;
cleanup:
	free(usable);
	policy_free(p);
	return ret;
}

/* Collects a JSON array of strings into a NULL-terminated vector of borrowed pointers. */
static const char **strings(json_t *arr, size_t *n)
{
	const char **v = calloc(json_array_size(arr) + 1, sizeof(*v));
	size_t i;
	json_t *e;

	*n = 0;
	if (!v)
		return NULL;
	json_array_foreach (arr, i, e)
		if (json_is_string(e) && json_string_value(e)[0] != '!')
			v[(*n)++] = json_string_value(e);
	return v;
}

int policy_lookup(const struct config *cfg, const char *name, struct policy **out, char *err,
		  size_t errlen)
{
	const char **vers = NULL, **ciphers = NULL, **suites = NULL, **groups = NULL;
	size_t nv, nc, ns, ng = 0;
	json_t *pol, *alias, *derived;
	int ret = 0;

	for (size_t i = 0; cfg && i < cfg->n_policies; i++) {
		const struct cfg_policy *c = &cfg->policies[i];

		if (strcmp(c->name, name) == 0)
			return build(name, (const char *const *)c->versions, c->n_versions,
				     (const char *const *)c->ciphers, c->n_ciphers,
				     (const char *const *)c->ciphersuites, c->n_ciphersuites,
				     (const char *const *)c->groups, c->n_groups, out, err, errlen);
	}
	GUARD(builtin_load());
	alias = json_object_get(aliases, name);
	pol = json_object_get(builtin, json_is_string(alias) ? json_string_value(alias) : name);
	if (!pol) {
		snprintf(err, errlen, "unknown security policy \"%s\"", name);
		ENSURE(false, ENOENT);
	}
	vers = strings(json_object_get(pol, "versions"), &nv);
	ciphers = strings(json_object_get(pol, "tls12_ciphers_openssl"), &nc);
	suites = strings(json_object_get(pol, "tls13_ciphersuites"), &ns);
	derived = json_object_get(pol, "derived");
	if (json_is_array(json_object_get(derived, "openssl_groups_from_s2n")))
		groups = strings(json_object_get(derived, "openssl_groups_from_s2n"), &ng);
	ENSURE(vers && ciphers && suites, ENOMEM);
	ret = build(name, vers, nv, ciphers, nc, suites, ns, groups, ng, out, err, errlen);
cleanup:
	free(vers);
	free(ciphers);
	free(suites);
	free(groups);
	return ret;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_unavailable; i++)
		free(p->unavailable[i]);
	free(p->unavailable);
	free(p->name);
	free(p->ciphers);
	free(p->ciphersuites);
	free(p->groups);
	free(p);
}

int policy_apply(SSL_CTX *ctx, const struct policy *p, char *err, size_t errlen)
{
	char *list = NULL;
	int ret = 0;

	/* Level 0 only where the policy itself asks for TLS < 1.2, which level 1+ forbids. */
	SSL_CTX_set_security_level(ctx, p->weak ? 0 : 1);
	if (!SSL_CTX_set_min_proto_version(ctx, p->min_version) ||
	    !SSL_CTX_set_max_proto_version(ctx, p->max_version)) {
		snprintf(err, errlen, "policy %s: cannot set protocol versions", p->name);
		ENSURE(false, EINVAL);
	}
	SSL_CTX_set_options(ctx, p->no_versions | SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	if (p->ciphers[0]) {
		ENSURE(asprintf(&list, "%s%s", p->ciphers, p->weak ? ":@SECLEVEL=0" : "") >= 0,
		       ENOMEM);
		if (SSL_CTX_set_cipher_list(ctx, list) != 1) {
			snprintf(err, errlen, "policy %s: OpenSSL rejects cipher list", p->name);
			ENSURE(false, EINVAL);
		}
	}
	if (p->ciphersuites[0] && SSL_CTX_set_ciphersuites(ctx, p->ciphersuites) != 1) {
		snprintf(err, errlen, "policy %s: OpenSSL rejects TLS 1.3 suites \"%s\"", p->name,
			 p->ciphersuites);
		ENSURE(false, EINVAL);
	}
	if (p->groups && SSL_CTX_set1_groups_list(ctx, p->groups) != 1) {
		snprintf(err, errlen, "policy %s: OpenSSL rejects groups \"%s\"", p->name,
			 p->groups);
		ENSURE(false, EINVAL);
	}
cleanup:
	free(list);
	return ret;
}

void policy_foreach_builtin(void (*fn)(const char *name, void *arg), void *arg)
{
	const char *name;
	json_t *v;

	if (builtin_load() < 0)
		return;
	json_object_foreach (builtin, name, v)
		fn(name, arg);
	json_object_foreach (aliases, name, v)
		fn(name, arg);
}
