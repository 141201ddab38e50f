#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "datapath.h"
#include "handoff.h"
#include "ktls.h"
#include "conn.h"
#include "conn_log.h"
#include "state.h"

static enum handoff_result stay(struct conn *c, const char *why)
{
	c->tier_note = why;
	return HANDOFF_USERSPACE;
}

enum handoff_result handoff_prepare(struct conn *c, struct ktls_keys *keys, struct ktls_seq *seq)
{
	const char *no;

	if (!c->tls.ktls_candidate || !c->tls.ssl)
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
	if (!ktls_cipher_supported(c->tls.ssl))
		return stay(c, "cipher not offloadable to kTLS");
	if (!datapath_ktls_cipher_ok(ktls_cipher_of(c->tls.ssl)))
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
	if (buf_len(&c->cin) || !record_aligned(&c->tls.rx_rec) || SSL_has_pending(c->tls.ssl))
		return stay(c, "client data already read into userspace");
	if ((no = ktls_session_keys(c->tls.ssl, &c->tls.tx_rec, keys, seq)))
		return stay(c, no);
	return HANDOFF_DONE;
}

enum handoff_result handoff_install(struct conn *c, struct ktls_keys *keys,
				    const struct ktls_seq *seq)
{
	enum ktls_state kstate = KTLS_STATE_PLAIN;
	char why[256];
	int r = ktls_install(c->cfd, keys, seq, 0, &kstate, why, sizeof(why));

	ktls_keys_wipe(keys);
	if (r < 0) {
		conn_log(c, LOG_WARN, "kTLS: %s", why);
		if (kstate == KTLS_STATE_PLAIN)
			return stay(c, "kTLS install failed (see warning)");
		conn_close(c, CONN_END_KTLS_HALFWAY);
		return HANDOFF_FATAL;
	}
	/* From here nothing may fail: the kernel owns the session. */
	return HANDOFF_DONE;
}
