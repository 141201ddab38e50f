/* hostname — the DNS name rules shared by certificate selection (certstore) and SNI routing
 * (route): normalising a received name and matching it against a configured name that may be a
 * wildcard (docs/configuration-certificates.md, "How the certificate is chosen", rule 2). Pure
 * string functions, no allocation. */
#ifndef KTLSD_HOSTNAME_H
#define KTLSD_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

/* Copies host[0..len) into out (size outlen) lowercased (ASCII), without one trailing dot.
 * Returns the resulting length, or -1 when it is empty or does not fit. */
int hostname_norm(const char *host, size_t len, char *out, size_t outlen);

/* How a configured name matches a host name: 0 no match, HOSTNAME_MATCH_EXACT for the same name,
 * otherwise a wildcard and the length of the suffix it matched (always below
 * HOSTNAME_MATCH_EXACT). Case-insensitive, a trailing dot on either is ignored, "*" only as a
 * whole leftmost label followed by at least two labels, and it stands for exactly one non-empty
 * label. A host containing "*" matches nothing. */
#define HOSTNAME_MATCH_EXACT 1000
int hostname_match(const char *name, const char *host);

/* Checks a configured name (a route's "sni"): a host name (letters, digits, '-', '_', labels of
 * 1 to 63 characters, at most 253 in all, one trailing dot allowed), or "*." followed by such a
 * name of at least two labels. Returns NULL, or why it is refused. */
const char *hostname_check_pattern(const char *name);

/* A name as a client sent it (an SNI: any byte but NUL reaches us through OpenSSL) is safe to
 * print and to hand on only when it holds nothing but letters, digits, '-', '.' and '_'. */
bool hostname_plain(const char *host, size_t len);
/* True when s is an IPv4 or IPv6 address literal (no SNI may carry one, RFC 6066 §3). */
bool hostname_is_ip(const char *s);
/* The text to log or show for a received name: plain bytes as they are, any other as \xHH, cut
 * to fit out (outlen >= 1, always terminated). Returns out. 4 × 255 + 1 bytes hold any SNI. */
#define HOSTNAME_TEXT_MAX (4 * 255 + 1)
char *hostname_text(const char *host, size_t len, char *out, size_t outlen);

#endif
