/* ktls — hands a finished TLS session to kernel TLS (the ktls-splice tier: docs/datapath.md,
 * "The handoff to kTLS").
 *
 * OpenSSL 3.0 never offloads TLS 1.3 RX and never offloads on memory BIOs, so ktlsd does it
 * itself, in three steps:
 *
 *   capture  ktls_capture_attach() on every SSL_CTX: a keylog callback keeps the TLS 1.3
 *            application traffic secrets of each SSL, and a message callback counts the records
 *            each direction has carried under its current keys (struct ktls_seq).
 *   derive   ktls_derive(): the AEAD key and IV of each direction (TLS 1.3: HKDF-Expand-Label of
 *            the traffic secrets; TLS 1.2: the key block from the master secret).
 *   install  ktls_install(): TCP_ULP "tls", then TLS_TX, then TLS_RX, through a setsockopt that
 *            tests replace (ktls_set_ops), with an operator-readable reason for every failure
 *            and what the socket is still good for afterwards (enum ktls_state).
 *
 * The handoff protocol the caller follows (where the sequence numbers come from, when it is safe
 * to call, what a failure leaves behind) is documented at the top of ktls.c.
 *
 * Key material lives only in struct ktls_keys (wipe it with ktls_keys_wipe) and in the per-SSL
 * capture data (wiped when the SSL is freed). Nothing here logs or formats a secret. */
#ifndef KTLSD_KTLS_H
#define KTLSD_KTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "err.h"
#include "record.h"

/* The AEAD ciphers ktlsd hands to the kernel (include/uapi/linux/tls.h) and to its own record
 * layer (rlayer.h). The kernel also takes AES-128-CCM; ktlsd does not (no built-in policy offers
 * it, datapath.c does not probe it): a CCM session is NONE and keeps OpenSSL's record layer. */
enum ktls_cipher {
	KTLS_CIPHER_NONE, /* not offloadable: stays on the userspace tier */
	KTLS_AES_GCM_128,
	KTLS_AES_GCM_256,
	KTLS_CHACHA20_POLY1305,
};

#define KTLS_KEY_MAX 32
#define KTLS_IV_LEN 12

/* One direction's traffic keys, before they are laid out for the kernel. */
struct ktls_dir {
	uint8_t key[KTLS_KEY_MAX]; /* ktls_key_len(cipher) bytes used */
	/* TLS 1.3 (every cipher) and TLS 1.2 ChaCha20-Poly1305: the 12-byte write IV.
	 * TLS 1.2 AES-GCM: the 4-byte implicit IV ("salt") from the key block, then zeros. */
	uint8_t iv[KTLS_IV_LEN];
};

struct ktls_keys {
	uint16_t version; /* TLS1_2_VERSION or TLS1_3_VERSION (0x0303/0x0304, as the kernel's) */
	enum ktls_cipher cipher;
	struct ktls_dir tx; /* what this end sends: server→client on a server SSL */
	struct ktls_dir rx; /* what this end receives */
	/* TLS 1.2 AES-GCM only: the explicit nonce of the first record the kernel sends (it
	 * adds one per record). Unset, ktls_install uses the TX sequence number (RFC 5288 §3 allows
	 * it); see ktls_keys_follow_tls12_nonce for why a caller may want to set it. */
	bool tls12_nonce_set;
	uint8_t tls12_tx_nonce[8];
};

/* Records already carried under the current traffic keys, in each direction: the sequence number
 * of the next record, i.e. what goes into the kernel's rec_seq. */
struct ktls_seq {
	uint64_t tx; /* records this end has sent (OpenSSL created them) */
	uint64_t rx; /* records this end has received and OpenSSL has fully processed */
};

/* What ktls_install left on the socket, on success and on failure alike. */
enum ktls_state {
	KTLS_STATE_PLAIN, /* no keys in the kernel: plain TCP bytes, userspace TLS may go on */
	KTLS_STATE_TX,	  /* the kernel encrypts what is written; reads return raw records */
	KTLS_STATE_TX_RX, /* both directions in the kernel */
};

/* ktls_install flags */
/* Install TLS_TX only. The caller keeps decrypting what it receives in userspace, and from then
 * on nothing OpenSSL writes may reach the socket (see KTLS_STATE_TX). */
#define KTLS_INSTALL_TX_ONLY 1u

/* The one system call ktls_install makes, replaceable so tests reach every failure path without
 * root or CONFIG_TLS. Same contract as setsockopt(2): 0, or -1 with errno set. */
struct ktls_ops {
	int (*setsockopt)(int fd, int level, int opt, const void *val, socklen_t len);
};

/* ---- capture (ktls_keys.c) ---------------------------------------------------------------- */

/* Installs ktlsd's keylog and message callbacks on ctx (it owns both from then on). Call it on
 * every SSL_CTX an SSL may use, including the ones SSL_set_SSL_CTX switches to: OpenSSL looks the
 * keylog callback up on the SSL's current context. Returns 0, -ENOMEM, or -EBUSY when ctx already
 * has another keylog callback. */
int ktls_capture_attach(SSL_CTX *ctx) __must_check;

/* The records counted under the current keys of ssl (see ktls.c for who counts what). Returns 0;
 * -ENOKEY if the capture did not see the key change of both directions (not attached, handshake
 * not finished, allocation failure in a callback); -ESTALE after a TLS 1.3 KeyUpdate or a TLS 1.2
 * handshake message after the handshake (the captured keys are no longer the ones in use);
 * -EAGAIN while OpenSSL holds bytes it has not processed (a partial record or unread plaintext):
 * the caller drains with SSL_read first. */
int ktls_capture_seq(SSL *ssl, struct ktls_seq *out) __must_check;

/* ---- derivation (ktls_keys.c) ------------------------------------------------------------- */

/* The kernel cipher for the negotiated suite, KTLS_CIPHER_NONE unless the protocol is TLS 1.2 or
 * 1.3 and the suite is AES-128/256-GCM or ChaCha20-Poly1305. */
enum ktls_cipher ktls_cipher_of(SSL *ssl);
bool ktls_cipher_supported(SSL *ssl);
/* "AES-GCM-128", "AES-GCM-256", "CHACHA20-POLY1305", or "none". */
const char *ktls_cipher_name(enum ktls_cipher c);
/* 16 or 32; 0 for KTLS_CIPHER_NONE. */
size_t ktls_key_len(enum ktls_cipher c);

/* Derives both directions' keys of a finished handshake on ssl (server or client). Returns 0;
 * -EOPNOTSUPP for a cipher or version the kernel does not take; -ENOKEY when the TLS 1.3 secrets
 * or the TLS 1.2 master secret are not available; -ESTALE after a key change (see
 * ktls_capture_seq); -ENOMEM or -EPROTO if OpenSSL fails. out is wiped on failure. */
int ktls_derive(SSL *ssl, struct ktls_keys *out) __must_check;

/* The two derivations under ktls_derive, for tests and for callers holding secrets themselves.
 * digest is the suite's hash ("SHA256", "SHA384"); server chooses which side is tx. */
int ktls_keys_tls13(enum ktls_cipher c, const char *digest, const uint8_t *client_secret,
		    const uint8_t *server_secret, size_t secret_len, bool server,
		    struct ktls_keys *out) __must_check;
int ktls_keys_tls12(enum ktls_cipher c, const char *digest, const uint8_t *master,
		    size_t master_len, const uint8_t client_random[32],
		    const uint8_t server_random[32], bool server,
		    struct ktls_keys *out) __must_check;

/* TLS 1.2 AES-GCM: makes the kernel continue OpenSSL's explicit nonces (last + 1, last + 2,
 * ...) instead of starting at the sequence number. OpenSSL starts its counter at a random value,
 * so the default can collide with a nonce it already used under the same key with probability
 * about (records OpenSSL sent) × (records the kernel will send) / 2^64; a caller that sees the
 * records OpenSSL wrote (the explicit nonce is the 8 bytes after each record header) removes
 * that chance by passing the last one. */
void ktls_keys_follow_tls12_nonce(struct ktls_keys *k, const uint8_t last_sent[8]);
/* Everything the handoff needs of a finished session: its keys and the next sequence number each
 * way; TLS 1.2 GCM continues OpenSSL's explicit nonces from tx, our side's record stream.
 * Returns NULL, or why they cannot be had. Wipe keys afterwards. */
const char *ktls_session_keys(SSL *ssl, const struct record_track *tx, struct ktls_keys *keys,
			      struct ktls_seq *seq);
void ktls_keys_wipe(struct ktls_keys *k);

/* ---- TLS 1.3 key updates (ktls_keys.c), for a record layer outside OpenSSL (rlayer.h) ---- */

#define KTLS_SECRET_MAX 48 /* SHA-384 */

/* The application traffic secrets of a finished TLS 1.3 handshake on ssl: tx is what this end
 * sends under. Returns their length (32 or 48, the suite's hash), -ENOKEY if the capture lacks
 * them, -ESTALE after a key change. */
int ktls_traffic_secrets(SSL *ssl, uint8_t tx[KTLS_SECRET_MAX],
			 uint8_t rx[KTLS_SECRET_MAX]) __must_check;
/* RFC 8446 §7.2: replaces secret (len bytes, 32 = SHA-256 or 48 = SHA-384) by the next
 * application traffic secret and derives that direction's key and IV from it into d. Returns 0,
 * -EINVAL, -ENOMEM or -EPROTO; secret is unchanged on failure. */
int ktls_key_update(enum ktls_cipher c, uint8_t *secret, size_t len,
		    struct ktls_dir *d) __must_check;

/* ---- install (ktls.c) --------------------------------------------------------------------- */

/* NULL restores the real setsockopt. Process-wide; meant for tests. */
void ktls_set_ops(const struct ktls_ops *ops);

/* Attaches the TLS ULP to the established TCP socket fd and installs k with the sequence numbers
 * seq (TLS_TX, then TLS_RX unless KTLS_INSTALL_TX_ONLY). The crypto_info structs handed to the
 * kernel are wiped before return. Returns 0, or the failing step's -errno with why naming the
 * step, the errno and what it means here. *state always says what the socket is now: after a
 * failure, KTLS_STATE_PLAIN means the caller may go on with userspace TLS on this socket;
 * KTLS_STATE_TX means it may not (the connection has to be closed). */
int ktls_install(int fd, const struct ktls_keys *k, const struct ktls_seq *seq, unsigned int flags,
		 enum ktls_state *state, char *why, size_t whylen) __must_check;

#endif
