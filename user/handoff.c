#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "datapath.h"
#include "handoff.h"
#include "ktls.h"
#include "conn.h"
#include "conn_log.h"
#include "rlayer.h"
#include "state.h"
#include "tls_wire.h"
#include "dp_splice.h"

static enum handoff_result stay(struct conn *c, const char *why)
{
	c->tier_note = why;
	return HANDOFF_USERSPACE;
}

/* Step 3 of the handoff (ktls.c): the session's keys and the next sequence number each way.
 * Returns NULL, or why they cannot be had. */
static const char *session_keys(struct conn *c, struct ktls_keys *keys, struct ktls_seq *seq)
{
	int r = ktls_capture_seq(c->ssl, seq);

	if (r < 0)
		return r == -ESTALE ? "keys changed after the handshake"
				    : "record sequence unknown";
	if (ktls_derive(c->ssl, keys) < 0)
		return "key derivation failed";
	/* TLS 1.2 GCM: continue OpenSSL's explicit nonces rather than restart them. */
	if (keys->version == TLS1_2_VERSION && keys->cipher != KTLS_CHACHA20_POLY1305 &&
	    c->tx_rec.after_ccs > 0)
		ktls_keys_follow_tls12_nonce(keys, c->tx_rec.last8);
	return NULL;
}

enum handoff_result handoff_try(struct conn *c)
{
	const char *no;
	enum ktls_state kstate = KTLS_STATE_PLAIN;
	struct ktls_keys keys;
	struct ktls_seq seq;
	char why[256];
	int r;

	if (!c->ktls_candidate || !c->ssl)
		return stay(c, NULL);
	/* A recv still in flight (pump_handshake posts one while its last flight waits for room in
	 * cout) would have the kernel write the first decrypted bytes into cin after it is freed:
	 * cancel it and come back when it has completed. A recv that took bytes first leaves them
	 * in cin, and the check below keeps the connection in userspace. */
	if (c->inflight & (1u << OP_CRECV)) {
		if (!(c->flags & CF_HANDOFF_CANCEL)) {
			c->flags |= CF_HANDOFF_CANCEL;
			conn_cancel(c, OP_CRECV);
		}
		return HANDOFF_WAIT;
	}
	if (!ktls_cipher_supported(c->ssl))
		return stay(c, "cipher not offloadable to kTLS");
	if (!datapath_ktls_cipher_ok(ktls_cipher_of(c->ssl)))
		return stay(c, "the kernel's TLS lacks this cipher");
	/* Our last handshake records (TLS 1.2: CCS and Finished) must be on the wire before the
	 * kernel starts numbering records. */
	if (buf_len(&c->cout) || c->cout.pins) {
		conn_post_send(c, true);
		return HANDOFF_WAIT;
	}
	/* Likewise the PROXY header to the backend: it must precede every spliced byte. */
	if (buf_len(&c->bout) || c->bout.pins) {
		conn_post_send(c, false);
		return HANDOFF_WAIT;
	}
	/* The client's handshake was read record by record, so nothing of its application data
	 * can be in userspace; if something is, the kernel could not see it: stay. */
	if (buf_len(&c->cin) || !record_aligned(&c->rx_rec) || SSL_has_pending(c->ssl))
		return stay(c, "client data already read into userspace");
	if ((no = session_keys(c, &keys, &seq)))
		return stay(c, no);
	if (dp_splice_attach(c) < 0) {
		ktls_keys_wipe(&keys);
		return stay(c, "cannot create splice pipes");
	}
	r = ktls_install(c->cfd, &keys, &seq, 0, &kstate, why, sizeof(why));
	ktls_keys_wipe(&keys);
	if (r < 0) {
		conn_log(c, LOG_WARN, "kTLS: %s", why);
		dp_splice.release(c);
		if (kstate == KTLS_STATE_PLAIN)
			return stay(c, "kTLS install failed (see warning)");
		conn_close(c, CONN_END_KTLS_HALFWAY);
		return HANDOFF_FATAL;
	}
	/* From here nothing may fail: the kernel owns the session, and c goes on dp_splice. */
	return HANDOFF_DONE;
}

void handoff_release(struct conn *c)
{
	SSL_free(c->ssl);
	c->ssl = NULL;
	buf_release(&c->cin);
	buf_release(&c->cout);
	buf_release(&c->bin);
	buf_release(&c->bout);
}

/* A record layer continuing the client's session as of now, or NULL. OpenSSL must hold nothing
 * of the client's: no unread plaintext (SSL_pending) and no part of a record (ssl_rx counts what
 * it read through its BIO; it reads one record at a time). What is left in cin then starts at a
 * record boundary. */
static struct rlayer *session_rlayer(struct conn *c)
{
	uint8_t tx_secret[KTLS_SECRET_MAX], rx_secret[KTLS_SECRET_MAX];
	struct rlayer *rl = NULL;
	struct ktls_keys keys;
	struct ktls_seq seq;
	int len = 0;

	if (!c->ssl || !rlayer_supported(ktls_cipher_of(c->ssl), (uint16_t)SSL_version(c->ssl)))
		return NULL;
	if (!record_aligned(&c->ssl_rx) || SSL_pending(c->ssl) || session_keys(c, &keys, &seq))
		return NULL;
	if (keys.version == TLS1_3_VERSION)
		len = ktls_traffic_secrets(c->ssl, tx_secret, rx_secret);
	if (len >= 0)
		rl = rlayer_new(&keys, &seq, tx_secret, rx_secret, (size_t)len);
	ktls_keys_wipe(&keys);
	OPENSSL_cleanse(tx_secret, sizeof(tx_secret));
	OPENSSL_cleanse(rx_secret, sizeof(rx_secret));
	return rl;
}

bool handoff_rlayer(struct conn *c)
{
	c->rl = session_rlayer(c);
	return c->rl != NULL;
}

int handoff_peek_close_notify(struct conn *c)
{
	static __thread uint8_t pt[RLAYER_MAX_OPEN];
	struct rlayer *rl = session_rlayer(c);
	struct rlayer_rec rec;
	int n;

	if (!rl)
		return -EOPNOTSUPP;
	n = rlayer_open(rl, c->cin.data + c->cin.head, buf_len(&c->cin), pt, sizeof(pt), &rec);
	rlayer_free(rl);
	n = n > 0 && rec.type == TLS_CT_ALERT && rec.len == 2 && pt[1] == TLS_ALERT_CLOSE_NOTIFY;
	OPENSSL_cleanse(pt, sizeof(pt));
	return n;
}

void handoff_free_ssl(struct conn *c)
{
	SSL_free(c->ssl);
	c->ssl = NULL;
}
