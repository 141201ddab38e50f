/* certstore_select.c — which certificate a ClientHello gets (docs/configuration-certificates.md,
 * "How the certificate is chosen"), and the check that a certificate's domains are names of it
 * (the same file, "Server certificates"). Pure functions over loaded certificates and a struct
 * certstore_hello, so every rule is unit-tested without a handshake.
 *
 * The rules, for certificates C1..Cn of a listener:
 *   1. No SNI: C1.
 *   2. SNI given: the candidates are the certificates one of whose names matches it. A name
 *      matches if it is equal, or if it is a wildcard "*.rest" and the SNI is one label followed
 *      by ".rest". An exact match beats any wildcard; among wildcards the longest suffix wins.
 *   3. Among equally good candidates: an ECDSA certificate the client can use, else an RSA one it
 *      can use, else (no usable one) the first. Ties after that: config order.
 *   4. SNI matches nothing: C1.
 *   5. If the client cannot use the chosen certificate's key type, -1: the handshake fails. A
 *      worse-matching certificate is never sent instead, and neither is C2 when C1 is refused.
 *
 * The choices behind the rules (and why):
 *   - Names are the subjectAltName DNS entries plus the last CN, both always (as load balancers
 *     such as Google Cloud's match against both; browsers ignore the CN when a SAN exists, so a
 *     CN-only match may still fail verification on the client: that is the operator's
 *     certificate to fix). A CN that is not a host name ("ACME Corp") is not a name.
 *   - Case-insensitive, and one trailing dot ignored on both sides ("Www.Example.COM." equals
 *     "www.example.com"): DNS names are.
 *   - "*" is only a whole leftmost label ("*.example.com"), followed by at least two labels
 *     ("*.com" never matches), and stands for exactly one non-empty label: "*.example.com"
 *     matches neither "example.com" nor "a.b.example.com". Partial wildcards ("w*.example.com")
 *     match nothing. This is what OpenSSL, browsers and RFC 6125 accept, so a certificate we pick
 *     by a wildcard is one the client will accept for that name.
 *   - With one label per wildcard, every wildcard matching a given SNI has the same suffix (the SNI
 *     minus its first label), so "longest suffix" never separates two matching wildcards; it is
 *     still how the score is computed. For ferrets.pets.example.com, "*.pets.example.com" matches
 *     and "*.example.com" does not match at all.
 *   - An SNI containing "*" matches nothing (C1).
 *   - Where load balancers such as Google Cloud's may send either certificate of a tie, ktlsd is
 *     deterministic: key type as rule 3, then config order. So in the cats/dogs example of
 *     docs/configuration-certificates.md ("Worked examples") ferrets.pets.example.com gets
 *     certificate A when A and B have the same key type.
 *   - Rule 3 refines "prefer ECDSA when the client allows it" with the curve: an ECDSA P-384
 *     certificate is unusable for a client that can only verify P-256, and an equally good RSA
 *     candidate is then chosen.
 *   - Domains (docs/configuration-certificates.md, "Server certificates": each must be a name of
 *     the certificate): a domain is accepted when it equals a name, or is a host name one of
 *     the certificate's wildcards covers (serving app.example.com with a *.example.com certificate
 *     is the reason wildcard certificates exist). A wildcard domain must be a wildcard name of the
 *     certificate itself.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "certstore_int.h"
#include "hostname.h"

int certstore_name_match(const char *name, const char *host)
{
	return hostname_match(name, host);
}

static int cert_score(const struct certstore_cert *c, const char *host)
{
	int best = 0;

	for (size_t i = 0; i < c->n_names; i++) {
		int s = certstore_name_match(c->names[i], host);

		if (s > best)
			best = s;
	}
	return best;
}

/* Rule 3's order: usable ECDSA, usable RSA, unusable. */
static int usability_rank(const struct certstore_hello *h, const struct certstore_cert *c)
{
	if (!certstore_hello_can_use(h, c))
		return 2;
	return c->type == CERTSTORE_KEY_ECDSA ? 0 : 1;
}

bool certstore_hello_can_use(const struct certstore_hello *h, const struct certstore_cert *c)
{
	switch (c->type) {
	case CERTSTORE_KEY_RSA:
		return h->rsa_ok;
	case CERTSTORE_KEY_ECDSA:
		return h->ecdsa_ok && !(c->curve & h->ecdsa_curves_bad);
	default:
		return false;
	}
}

int certstore_select_ex(struct certstore_cert *const *certs, size_t n,
			const struct certstore_hello *h, enum certstore_match *how)
{
	enum certstore_match m = CERTSTORE_MATCH_NO_SNI;
	int best = 0, best_score = 0, best_rank = 3;

	if (n == 0) {
		if (how)
			*how = CERTSTORE_MATCH_DEFAULT;
		return -1;
	}
	if (h->has_sni && h->sni[0]) {
		for (size_t i = 0; i < n; i++) {
			int score = cert_score(certs[i], h->sni), rank;

			if (score == 0 || score < best_score)
				continue;
			rank = usability_rank(h, certs[i]);
			if (score > best_score || rank < best_rank) {
				best = (int)i;
				best_score = score;
				best_rank = rank;
			}
		}
		if (best_score == 0)
			m = CERTSTORE_MATCH_DEFAULT;
		else if (best_score == CERTSTORE_SCORE_EXACT)
			m = CERTSTORE_MATCH_EXACT;
		else
			m = CERTSTORE_MATCH_WILDCARD;
	}
	if (how)
		*how = m;
	if (!certstore_hello_can_use(h, certs[best]))
		return -1;
	return best;
}

int certstore_select(struct certstore_cert *const *certs, size_t n, const struct certstore_hello *h)
{
	return certstore_select_ex(certs, n, h, NULL);
}

const char *certstore_match_name(enum certstore_match m)
{
	switch (m) {
	case CERTSTORE_MATCH_NO_SNI:
		return "no-sni";
	case CERTSTORE_MATCH_DEFAULT:
		return "default";
	case CERTSTORE_MATCH_EXACT:
		return "exact";
	case CERTSTORE_MATCH_WILDCARD:
		return "wildcard";
	}
	return "?";
}

static bool domain_ok(const struct certstore_cert *c, const char *domain)
{
	for (size_t i = 0; i < c->n_names; i++) {
		if (domain[0] == '*') {
			if (strcmp(c->names[i], domain) == 0)
				return true;
		} else if (certstore_name_match(c->names[i], domain) > 0) {
			return true;
		}
	}
	return false;
}

int certstore_cert_check_domains(const struct certstore_cert *c, const char *const *domains,
				 size_t n, char *err, size_t errlen)
{
	char d[256], names[512];
	size_t off = 0;

	for (size_t k = 0; k < n; k++) {
		if (!domains[k] ||
		    hostname_norm(domains[k], strlen(domains[k]), d, sizeof(d)) < 0) {
			if (err && errlen)
				snprintf(err, errlen, "domain \"%s\" is not a valid host name",
					 domains[k] ? domains[k] : "");
			return -EINVAL;
		}
		if (domain_ok(c, d))
			continue;
		names[0] = '\0';
		for (size_t i = 0; i < c->n_names && off < sizeof(names); i++)
			off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
						i ? ", " : "", c->names[i]);
		if (err && errlen)
			snprintf(err, errlen,
				 "%s: domain \"%s\" is not a name of the certificate (its "
				 "names: %s)",
				 c->path, domains[k], c->n_names ? names : "none");
		return -EINVAL;
	}
	return 0;
}
