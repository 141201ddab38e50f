/* sni — reads the server name out of a TLS ClientHello without terminating TLS, for
 * tls-passthrough listeners. Hand-written, bounded and stateless: the caller passes every byte
 * received so far and gets "need more", "done" (with the name, if any) or a refusal. No OpenSSL:
 * ktlsd never decrypts a passthrough connection, and the bytes are forwarded untouched.
 *
 * What is accepted (RFC 8446 §4.1.2 and §5.1, RFC 5246 §6.2 and §7.4.1.2, RFC 6066 §3):
 *   - one or more TLS handshake records (content type 22, version 3.x, 1..2^14 bytes each), the
 *     ClientHello possibly split across them at any byte;
 *   - a ClientHello handshake message of at most SNI_MAX_HELLO bytes (type and length included),
 *     and all of its records together at most SNI_MAX_WIRE bytes: a client that needs more is
 *     refused (SNI_TOO_BIG) instead of being buffered;
 *   - legacy_version 3.x, a session id of at most 32 bytes, a non-empty even-length cipher suite
 *     list, at least one compression method, and either no extensions or an extension block that
 *     fills the rest of the message exactly, without duplicate extension types.
 * The server_name extension must be well formed (non-empty list, every entry inside it, a
 * non-empty name, at most one host_name); other name types are skipped. A host_name that is not
 * printable ASCII (0x21-0x7e; IDNs travel as A-labels) or longer than 253 characters is reported
 * as no SNI (has_sni false, name_invalid true): the connection is routed as if none was sent.
 * SSLv2-compatible hellos (first byte with the high bit set) and anything else are refused. */
#ifndef KTLSD_SNI_H
#define KTLSD_SNI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls_wire.h"

#define SNI_MAX_HELLO 16384 /* handshake header + ClientHello body */
#define SNI_MAX_WIRE (SNI_MAX_HELLO + TLS_RECORD_HEADER)
#define SNI_MAX_NAME 253

enum sni_result {
	SNI_NEED_MORE, /* a prefix of a possible ClientHello: read more */
	SNI_DONE,      /* a complete, well-formed ClientHello */
	SNI_NOT_TLS,   /* not a TLS handshake (plain HTTP, SSLv2 hello, garbage) */
	SNI_MALFORMED, /* TLS framing, but the records or the ClientHello are broken */
	SNI_TOO_BIG,   /* the ClientHello or its records exceed the limits above */
};

struct sni_hello {
	bool has_sni;
	bool name_invalid;	     /* a host_name was sent but is not a usable DNS name */
	char name[SNI_MAX_NAME + 1]; /* lowercased, trailing dot removed; "" without SNI */
	size_t wire_len; /* bytes of input up to the end of the record completing the hello */
};

/* Parses in[0..len), the first bytes the client sent. On SNI_DONE out is filled; on a refusal
 * *why (when not NULL) is a static, operator-readable reason. */
enum sni_result sni_parse(const uint8_t *in, size_t len, struct sni_hello *out, const char **why);

/* The body of a server_name extension (RFC 6066 §3). Returns 1 with the normalised host name in
 * out, 0 when no usable host_name is there (*invalid set when one was present but unusable), or
 * -1 when the extension is malformed. Shared with certstore's ClientHello summary. */
int sni_server_name(const uint8_t *ext, size_t len, char *out, size_t outlen, bool *invalid);

const char *sni_result_name(enum sni_result r); /* "need-more", "done", "not-tls", ... */

#endif
