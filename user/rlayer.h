/* rlayer — ktlsd's own TLS record layer, for sessions that stay in userspace.
 *
 * Once a handshake is done, a connection the kernel cannot take (no kTLS here, or a listener that
 * forces the userspace tier) needs nothing of OpenSSL but record protection. rlayer does that one
 * job with the keys and sequence numbers the kTLS handoff already derives (ktls.h), so the SSL
 * object, its record buffers and its copies are gone for the rest of the connection, as they are
 * after a kernel handoff.
 *
 * It does what kernel TLS does for the same sessions (net/tls/tls_sw.c) and no more: it frames,
 * seals and opens records and checks their integrity. What a non-data record means (alerts, a
 * TLS 1.3 KeyUpdate, a TLS 1.2 renegotiation attempt) is the caller's to decide (conn_rl.c).
 * Suites: AES-128-GCM, AES-256-GCM (RFC 5288, RFC 8446 §5.3) and ChaCha20-Poly1305 (RFC 7905),
 * TLS 1.2 and 1.3; any other session keeps OpenSSL's record layer.
 *
 * The cipher contexts are created on first use and dropped by rlayer_idle(): an idle connection
 * holds only its keys. Key material is wiped when it is replaced and when the rlayer is freed. */
#ifndef KTLSD_RLAYER_H
#define KTLSD_RLAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "ktls.h"
#include "tls_wire.h"

/* What a sealed record adds to its plaintext, at most: the header, TLS 1.2 GCM's explicit nonce
 * and the tag (TLS 1.3 adds the header, the inner type byte and the tag). */
#define RLAYER_OVERHEAD (TLS_RECORD_HEADER + TLS_EXPLICIT_NONCE + TLS_AEAD_TAG)
/* The most plaintext rlayer_open may write for one record (TLS 1.3 may pad up to 2^14 + 256). */
#define RLAYER_MAX_OPEN (TLS_MAX_PLAINTEXT + TLS_MAX_EXPANSION_13)

struct rlayer;

/* One opened record: its content type (TLS 1.3: the inner type) and plaintext length. */
struct rlayer_rec {
	uint8_t type;
	uint32_t len;
};

/* True when rlayer can carry a session of this cipher and protocol version. */
bool rlayer_supported(enum ktls_cipher c, uint16_t version);

/* A record layer that continues a session: both directions' keys, the sequence number of the
 * next record each way, and for TLS 1.3 the application traffic secrets (secret_len 32 or 48;
 * NULL and 0 for TLS 1.2), which KeyUpdate derives from. Copies what it needs; the caller wipes
 * its own copies. NULL when out of memory or the suite is not supported. */
struct rlayer *rlayer_new(const struct ktls_keys *k, const struct ktls_seq *seq,
			  const uint8_t *tx_secret, const uint8_t *rx_secret, size_t secret_len);
/* Wipes and frees; NULL is fine. */
void rlayer_free(struct rlayer *rl);
/* Frees the cipher contexts while the connection is idle; the next record recreates them. */
void rlayer_idle(struct rlayer *rl);
uint16_t rlayer_version(const struct rlayer *rl);

/* Seals one record of content type type carrying in[0, n), n ≤ TLS_MAX_PLAINTEXT, into out (room
 * bytes). Returns the record's length; -ENOSPC when room < n + RLAYER_OVERHEAD (nothing written,
 * nothing consumed); -EOVERFLOW when the sequence numbers are exhausted; -ENOMEM or -EPROTO when
 * OpenSSL's cipher fails. */
int rlayer_seal(struct rlayer *rl, uint8_t type, const uint8_t *in, size_t n, uint8_t *out,
		size_t room) __must_check;

/* Opens the record at the start of in[0, len) into out (room bytes, not overlapping in). Returns
 * the bytes of in the record occupies, with *rec set and out[0, rec->len) holding its plaintext;
 * 0 while in does not hold the whole record; -ENOSPC when room is less than its ciphertext
 * (nothing consumed: call again with more room, at most RLAYER_MAX_OPEN is ever needed). Errors,
 * each the end of the session (rlayer_alert names the alert to send): -EMSGSIZE a record longer
 * than the protocol allows (TLS 1.3: a TLSInnerPlaintext over 2^14 + 1 bytes, padding included);
 * -EBADMSG a record that fails authentication; -EPROTONOSUPPORT a record version other than
 * 0x0303; -EPROTO a record type that cannot appear after the handshake, or a TLS 1.3 record with
 * no content type; -ENOMEM, -EOVERFLOW. out may have been written on failure, but holds nothing
 * authenticated. */
int rlayer_open(struct rlayer *rl, const uint8_t *in, size_t len, uint8_t *out, size_t room,
		struct rlayer_rec *rec) __must_check;

/* TLS 1.3 KeyUpdate (RFC 8446 §4.6.3) of one direction: after the peer's KeyUpdate (rx), after
 * sealing our own (tx). The next traffic secret, its key and IV, sequence number 0. Returns 0,
 * -EOPNOTSUPP for TLS 1.2, or the derivation's error (the old keys stay). */
int rlayer_key_update(struct rlayer *rl, bool tx) __must_check;

/* The TLS alert description (RFC 8446 §6.2) that reports an rlayer_open error to the peer. */
uint8_t rlayer_alert(const struct rlayer *rl, int err);

#endif
