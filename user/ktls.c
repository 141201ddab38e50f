/* ktls — installing a finished session's keys in kernel TLS.
 *
 * The handoff, as the conn layer performs it on a server connection:
 *
 *   1. The handshake is finished (SSL_is_init_finished) and ktls_capture_attach() was called on
 *      the SSL_CTX before the SSL was created.
 *   2. Drain. No recv is in flight on the socket. SSL_read until it wants more bytes, with cin
 *      empty, so that OpenSSL holds neither plaintext nor part of a record (SSL_has_pending() is
 *      0). Forward that plaintext first. Every record OpenSSL wrote has left cout for the socket
 *      and no SSL call is waiting to write (the kernel's first record must follow OpenSSL's
 *      last on the wire). The bytes still in the socket's receive queue start at a record
 *      boundary and are the kernel's from here on.
 *   3. ktls_capture_seq() gives the sequence numbers, ktls_derive() the keys.
 *   4. ktls_install(); then ktls_keys_wipe(), and the SSL may be freed.
 *
 * Sequence numbers: where they come from, and who counts.
 *   rec_seq is the number of the next record in that direction under the current keys (RFC 8446
 *   §5.3, RFC 5246 §6.1); OpenSSL 3.0 has no public getter for it, so the capture counts records
 *   through OpenSSL's message callback, which sees every record OpenSSL creates or reads (see
 *   ktls_keys.c):
 *   - TLS 1.3: 0 for each direction's application keys, plus every record under them before the
 *     handoff. On a server, tx counts the NewSessionTicket records OpenSSL sends at the end of
 *     the handshake (2 by default, none when tickets are off) and any data or alert it wrote;
 *     rx counts the client's records OpenSSL read after the client Finished. A KeyUpdate makes
 *     the captured secrets stale: ktls_capture_seq() and ktls_derive() say -ESTALE and the
 *     connection stays in userspace (OpenSSL does not log updated secrets).
 *   - TLS 1.2: 0 at each direction's ChangeCipherSpec; the Finished is record 0, so after the
 *     handshake both directions are at 1 plus any data records since.
 *   The caller passes what ktls_capture_seq() returned to ktls_install(). A conn layer that also
 *   counts records in its BIO can check its count against it; they must agree.
 *
 * How struct ktls_keys becomes the kernel's tls12_crypto_info_* (include/uapi/linux/tls.h),
 * following net/tls/tls_sw.c (tls_set_sw_offload copies salt then iv into one nonce buffer) and
 * net/tls/tls.h (tls_xor_iv_with_seq, tls_fill_prepend, tls_advance_record_sn):
 *   - info.version: TLS_1_2_VERSION 0x0303 or TLS_1_3_VERSION 0x0304.
 *   - key: the write key; rec_seq: the sequence number, big-endian.
 *   - AES-GCM, TLS 1.3: salt = iv[0..4], iv = iv[4..12]. The kernel XORs rec_seq into the
 *     last 8 bytes of salt||iv, which is RFC 8446 §5.3's nonce.
 *   - AES-GCM, TLS 1.2: salt = the 4-byte implicit IV from the key block. iv = the explicit
 *     nonce: on TX the kernel writes it after each record header and adds 1 per record (so it
 *     must never repeat a nonce OpenSSL used under this key: see ktls_keys_follow_tls12_nonce);
 *     on RX the kernel reads it from each record and ignores this field (we set rec_seq there).
 *   - ChaCha20-Poly1305, both versions: iv = the 12-byte IV, no salt; the kernel XORs rec_seq
 *     into its last 8 bytes (RFC 7905 §2, RFC 8446 §5.3).
 *   OpenSSL's own ktls_configure_crypto (ssl/ktls.c) fills the same fields the same way.
 *
 * Failures, and what each leaves (read in net/ipv4/tcp_ulp.c, net/tls/tls_main.c and tls_sw.c of
 * the 6.x kernels; the VM suite is where this is proven):
 *   - TCP_ULP fails: nothing changed.
 *   - TLS_TX fails: the ULP stays attached (it cannot be removed), but with no keys in either
 *     direction tls_init's TLS_BASE/TLS_BASE protocol only overrides setsockopt, getsockopt and
 *     close: send, recv and splice are plain TCP, and the failed setsockopt zeroed its
 *     crypto_info and freed what it allocated. Userspace TLS can go on; the socket can no longer
 *     get another ULP or (on 6.1/6.12) join a sockmap.
 *   - TLS_RX fails after TLS_TX succeeded: the kernel now encrypts everything written to the
 *     socket, so nothing OpenSSL writes (data, alerts, close_notify) may reach it again, and the
 *     kernel's TX state cannot be taken back. No fallback: the connection is closed.
 *   Once TLS_RX succeeded nothing else can fail. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/tls.h>
#include <openssl/crypto.h>

#include "ktls.h"
#include "tls_wire.h"

_Static_assert(TLS_1_2_VERSION == TLS1_2_VERSION, "kernel and OpenSSL version numbers differ");
_Static_assert(TLS_1_3_VERSION == TLS1_3_VERSION, "kernel and OpenSSL version numbers differ");

static const struct ktls_ops real_ops = { .setsockopt = setsockopt };
static const struct ktls_ops *ops = &real_ops;

void ktls_set_ops(const struct ktls_ops *o)
{
	ops = o ? o : &real_ops;
}

union crypto_info {
	struct tls_crypto_info info;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

/* Where one cipher's fields are in its crypto_info struct. */
struct layout {
	uint16_t type;
	socklen_t size;
	size_t iv_off, iv_len, key_off, key_len, salt_off, salt_len, seq_off;
};

#define LAYOUT(T, S)                                                                               \
	{                                                                                          \
		.type = TLS_CIPHER_##T, .size = sizeof(struct S),                                  \
		.iv_off = offsetof(struct S, iv), .iv_len = TLS_CIPHER_##T##_IV_SIZE,              \
		.key_off = offsetof(struct S, key), .key_len = TLS_CIPHER_##T##_KEY_SIZE,          \
		.salt_off = offsetof(struct S, salt), .salt_len = TLS_CIPHER_##T##_SALT_SIZE,      \
		.seq_off = offsetof(struct S, rec_seq),                                            \
	}

static const struct layout layouts[] = {
	[KTLS_AES_GCM_128] = LAYOUT(AES_GCM_128, tls12_crypto_info_aes_gcm_128),
	[KTLS_AES_GCM_256] = LAYOUT(AES_GCM_256, tls12_crypto_info_aes_gcm_256),
	[KTLS_CHACHA20_POLY1305] = LAYOUT(CHACHA20_POLY1305, tls12_crypto_info_chacha20_poly1305),
};

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Lays out one direction (see the top of this file). Returns the struct's size. */
static socklen_t fill(union crypto_info *ci, const struct ktls_keys *k, bool tx, uint64_t seq)
{
	const struct layout *l = &layouts[k->cipher];
	const struct ktls_dir *d = tx ? &k->tx : &k->rx;
	uint8_t *p = (uint8_t *)ci;

	memset(ci, 0, sizeof(*ci));
	ci->info.version = k->version;
	ci->info.cipher_type = l->type;
	memcpy(p + l->key_off, d->key, l->key_len);
	put_be64(p + l->seq_off, seq);
	if (l->salt_len == 0) { /* ChaCha20-Poly1305: the whole IV */
		memcpy(p + l->iv_off, d->iv, l->iv_len);
	} else if (k->version == TLS1_3_VERSION) {
		memcpy(p + l->salt_off, d->iv, l->salt_len);
		memcpy(p + l->iv_off, d->iv + l->salt_len, l->iv_len);
	} else {
		memcpy(p + l->salt_off, d->iv, l->salt_len);
		if (tx && k->tls12_nonce_set)
			memcpy(p + l->iv_off, k->tls12_tx_nonce, l->iv_len);
		else
			put_be64(p + l->iv_off, seq);
	}
	return l->size;
}

static const char *errno_name(int err)
{
	const char *n = strerrorname_np(err);

	return n ? n : "unknown errno";
}

/* What err means for TCP_ULP "tls" (tcp_set_ulp, tls_init). */
static const char *ulp_meaning(int err)
{
	switch (err) {
	case ENOENT:
		return "the kernel has no TLS ULP: CONFIG_TLS is off or the tls module is not "
		       "loaded (modprobe tls; the kernel loads it on demand only for "
		       "CAP_NET_ADMIN)";
	case EEXIST:
		return "the socket already has an upper-layer protocol (kTLS already attached?)";
	case ENOTCONN:
		return "the socket is not an established TCP connection";
	case ENOPROTOOPT:
		return "the kernel does not know TCP_ULP (older than 4.13), or fd is not TCP";
	case ENOMEM:
		return "the kernel is out of memory";
	case EPERM:
	case EACCES:
		return "refused by a security policy (seccomp, LSM)";
	default:
		return "unexpected failure";
	}
}

/* What err means for TLS_TX/TLS_RX (do_tls_setsockopt_conf, tls_set_sw_offload). */
static const char *conf_meaning(int err)
{
	switch (err) {
	case EINVAL:
		return "the kernel refused the parameters: this kernel does not support the cipher "
		       "or TLS version, or the socket is in a BPF sockmap/sockhash (6.1 and 6.12 "
		       "refuse TLS_TX/TLS_RX there)";
	case ENOENT:
		return "the kernel crypto API has no implementation of this cipher (crypto module "
		       "such as gcm or chacha20poly1305 not available)";
	case EBUSY:
		return "keys for this direction are already installed";
	case ENOPROTOOPT:
		return "SOL_TLS is not available: the TLS ULP is not attached to this socket";
	case ENOMEM:
		return "the kernel is out of memory";
	default:
		return "unexpected failure";
	}
}

static const char *after(enum ktls_state st, bool ulp)
{
	if (st == KTLS_STATE_TX)
		return "TLS_TX is installed, so the kernel encrypts everything written to this "
		       "socket and OpenSSL must never write to it again: userspace TLS cannot go "
		       "on, close the connection";
	if (ulp)
		return "the TLS ULP stays attached without keys and the socket still carries plain "
		       "TCP bytes: userspace TLS can go on";
	return "the socket is unchanged: userspace TLS can go on";
}

static void explain(char *why, size_t whylen, const char *step, int err, const char *meaning,
		    enum ktls_state st, bool ulp)
{
	if (why && whylen)
		snprintf(why, whylen, "%s: %s (%s): %s; %s", step, errno_name(err), strerror(err),
			 meaning, after(st, ulp));
}

static int conf(int fd, int opt, const struct ktls_keys *k, bool tx, uint64_t seq)
{
	union crypto_info ci;
	socklen_t len = fill(&ci, k, tx, seq);
	int r = ops->setsockopt(fd, SOL_TLS, opt, &ci, len);
	int err = errno;

	OPENSSL_cleanse(&ci, sizeof(ci));
	return r == 0 ? 0 : -(err ? err : EIO);
}

int ktls_install(int fd, const struct ktls_keys *k, const struct ktls_seq *seq, unsigned int flags,
		 enum ktls_state *state, char *why, size_t whylen)
{
	static const char ulp[] = "tls";
	int ret;

	*state = KTLS_STATE_PLAIN;
	if (why && whylen)
		why[0] = '\0';
	if ((k->version != TLS1_2_VERSION && k->version != TLS1_3_VERSION) ||
	    ktls_key_len(k->cipher) == 0) {
		if (why && whylen)
			snprintf(why, whylen,
				 "kTLS install: no kernel cipher for these keys (%s); %s",
				 ktls_cipher_name(k->cipher), after(KTLS_STATE_PLAIN, false));
		return -EINVAL;
	}
	if (ops->setsockopt(fd, IPPROTO_TCP, TCP_ULP, ulp, sizeof(ulp)) != 0) {
		ret = -(errno ? errno : EIO);
		explain(why, whylen, "TCP_ULP \"tls\"", -ret, ulp_meaning(-ret), *state, false);
		return ret;
	}
	ret = conf(fd, TLS_TX, k, true, seq->tx);
	if (ret < 0) {
		explain(why, whylen, "TLS_TX", -ret, conf_meaning(-ret), *state, true);
		return ret;
	}
	*state = KTLS_STATE_TX;
	if (flags & KTLS_INSTALL_TX_ONLY)
		return 0;
	ret = conf(fd, TLS_RX, k, false, seq->rx);
	if (ret < 0) {
		explain(why, whylen, "TLS_RX", -ret, conf_meaning(-ret), *state, true);
		return ret;
	}
	*state = KTLS_STATE_TX_RX;
	return 0;
}
