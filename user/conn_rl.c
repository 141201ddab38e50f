#include <errno.h>

#include <openssl/ssl.h>

#include "conn.h"
#include "conn_rl.h"
#include "conn_log.h"
#include "ktls.h"
#include "rlayer.h"
#include "state.h"
#include "tls_wire.h"

#define MAX_WARNINGS 5	   /* OpenSSL's MAX_WARN_ALERT_COUNT */
#define MAX_EMPTY 32	   /* empty records in a row: OpenSSL's MAX_EMPTY_RECORDS */
#define MAX_KEY_UPDATES 32 /* KeyUpdates with no data between them: BoringSSL's kMaxKeyUpdates */

/* Records owed to the client before any more data (conn->rl_pending). */
enum rl_pending {
	RL_OWE_KEY_UPDATE = 1 << 0, /* TLS 1.3: the client asked for our KeyUpdate */
	RL_OWE_NO_RENEG = 1 << 1,   /* TLS 1.2: the no_renegotiation warning */
};

/* Seals one small record into cout. Returns 0, -ENOSPC (try again when cout drains), or another
 * negative errno (the connection cannot go on). */
static int seal_small(struct conn *c, uint8_t type, const uint8_t *p, size_t n)
{
	struct buf *o = &c->cout;
	int r;

	if (buf_ready(o) < 0)
		return -ENOMEM;
	if (buf_space(o) < n + RLAYER_OVERHEAD)
		buf_compact(o);
	r = rlayer_seal(c->tls.rl, type, p, n, o->data + o->tail, buf_space(o));
	if (r > 0)
		o->tail += (uint32_t)r;
	return r < 0 ? r : 0;
}

/* Ends the connection for a TLS error. With an alert to send, cout is flushed first (it ends with
 * the alert); pump() closes once it has left. */
static bool fail(struct conn *c, const char *why, uint8_t alert)
{
	uint8_t a[2] = { TLS_ALERT_LEVEL_FATAL, alert };

	conn_log(c, LOG_INFO, "TLS error from client: %s", why);
	if (!alert || (c->flags & CF_C_NOTIFY) || seal_small(c, TLS_CT_ALERT, a, sizeof(a)) < 0) {
		conn_close(c, CONN_END_CLIENT_TLS);
		return false;
	}
	conn_close_after_flush(c, CONN_END_CLIENT_TLS);
	return false;
}

static bool on_alert(struct conn *c, const uint8_t *p, uint32_t n)
{
	char why[128];

	if (conn_rl_record_alert(rlayer_version(c->tls.rl), TLS_CT_ALERT, p, n))
		return fail(c, "malformed alert", TLS_ALERT_UNEXPECTED_MESSAGE);
	if (p[1] == TLS_ALERT_CLOSE_NOTIFY) {
		c->flags |= CF_C_DONE;
		return true;
	}
	/* TLS 1.2 warnings go by (but not a stream of them); TLS 1.3 has only user_canceled. */
	if (rlayer_version(c->tls.rl) == TLS1_3_VERSION
		? p[1] == TLS_ALERT_USER_CANCELED
		: p[0] == TLS_ALERT_LEVEL_WARNING && p[1] != TLS_ALERT_NO_RENEGOTIATION) {
		if (++c->tls.rl_warnings < MAX_WARNINGS)
			return true;
		return fail(c, "too many warning alerts", TLS_ALERT_UNEXPECTED_MESSAGE);
	}
	snprintf(why, sizeof(why), "alert %s (level %u, code %u)", SSL_alert_desc_string_long(p[1]),
		 p[0], p[1]);
	conn_log(c, LOG_INFO, "TLS error from client: %s", why);
	conn_close(c, CONN_END_CLIENT_TLS);
	return false;
}

/* A TLS 1.3 KeyUpdate (RFC 8446 §4.6.3), alone in its record: it must end the record (§5.1) and
 * ktlsd takes no other post-handshake message. The alerts are OpenSSL 3.0's: a body that is not one
 * byte is decode_error when empty and illegal_parameter when longer (its maximum message size),
 * a request_update other than 0 or 1 illegal_parameter. */
static uint8_t key_update_alert(const uint8_t *p, uint32_t n)
{
	uint32_t len;

	if (n < TLS_HS_HEADER || p[0] != TLS_HS_KEY_UPDATE)
		return TLS_ALERT_UNEXPECTED_MESSAGE;
	len = (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	if (len == 0)
		return TLS_ALERT_DECODE_ERROR;
	if (len > 1)
		return TLS_ALERT_ILLEGAL_PARAMETER;
	if (n != TLS_HS_HEADER + 1) /* the message spans records, or another follows */
		return TLS_ALERT_UNEXPECTED_MESSAGE;
	return p[TLS_HS_HEADER] > 1 ? TLS_ALERT_ILLEGAL_PARAMETER : 0;
}

uint8_t conn_rl_record_alert(uint16_t version, uint8_t type, const uint8_t *p, uint32_t n)
{
	/* Only application data may be empty (RFC 8446 §5.4, RFC 5246 §6.2.1). An alert is
	 * exactly two bytes (RFC 8446 §6, RFC 5246 §7.2); OpenSSL 3.0 answers any other length with
	 * unexpected_message (SSL_R_INVALID_ALERT), not decode_error, and so does ktlsd. */
	if (n == 0 || (type == TLS_CT_ALERT && n != 2))
		return TLS_ALERT_UNEXPECTED_MESSAGE;
	if (type == TLS_CT_ALERT)
		return 0;
	if (type != TLS_CT_HANDSHAKE)
		return TLS_ALERT_UNEXPECTED_MESSAGE;
	/* TLS 1.2: a ClientHello asks to renegotiate (refused with a warning, as OpenSSL does under
	 * SSL_OP_NO_RENEGOTIATION); any other message is unexpected, a ClientHello's later
	 * fragments too: a renegotiation is refused on its first record. */
	if (version != TLS1_3_VERSION)
		return p[0] == TLS_HS_CLIENT_HELLO ? 0 : TLS_ALERT_UNEXPECTED_MESSAGE;
	return key_update_alert(p, n);
}

static bool on_handshake(struct conn *c, const uint8_t *p, uint32_t n)
{
	uint8_t alert;

	alert = conn_rl_record_alert(rlayer_version(c->tls.rl), TLS_CT_HANDSHAKE, p, n);
	if (alert)
		return fail(c, "malformed or unexpected handshake message after the handshake",
			    alert);
	if (rlayer_version(c->tls.rl) != TLS1_3_VERSION) {
		conn_log_renegotiation(c);
		c->tls.rl_pending |= RL_OWE_NO_RENEG;
		return true;
	}
	if (++c->tls.rl_updates > MAX_KEY_UPDATES)
		return fail(c, "too many KeyUpdates", TLS_ALERT_UNEXPECTED_MESSAGE);
	if (rlayer_key_update(c->tls.rl, false) < 0)
		return fail(c, "KeyUpdate: key derivation failed", TLS_ALERT_INTERNAL_ERROR);
	if (p[TLS_HS_HEADER])
		c->tls.rl_pending |= RL_OWE_KEY_UPDATE;
	conn_log(c, LOG_DEBUG, "client KeyUpdate%s", p[TLS_HS_HEADER] ? " (update requested)" : "");
	return true;
}

bool conn_rl_decrypt(struct conn *c)
{
	struct buf *in = &c->cin, *o = &c->bout;
	struct rlayer_rec rec;
	int n;

	while (!(c->flags & CF_C_DONE)) {
		if (buf_ready(o) < 0) {
			conn_close(c, CONN_END_NO_MEMORY);
			return false;
		}
		if (buf_space(o) < RLAYER_MAX_OPEN)
			buf_compact(o);
		n = rlayer_open(c->tls.rl, in->data + in->head, buf_len(in), o->data + o->tail,
				buf_space(o), &rec);
		if (n == -ENOSPC)
			return true; /* bout drains first */
		if (n == 0) {
			/* A FIN ends the client's direction as close_notify would
			 * (SSL_OP_IGNORE_UNEXPECTED_EOF, as with OpenSSL before). */
			if (c->flags & CF_CIN_EOF)
				c->flags |= CF_C_DONE;
			return true;
		}
		if (n < 0)
			return fail(c,
				    n == -EBADMSG	    ? "bad record mac"
				    : n == -EMSGSIZE	    ? "record overflow"
				    : n == -EPROTO	    ? "unexpected record"
				    : n == -EPROTONOSUPPORT ? "wrong record version"
							    : "record layer failure",
				    rlayer_alert(c->tls.rl, n));
		buf_consume(in, (uint32_t)n);
		/* Records that carry nothing cost a decryption each: OpenSSL's cap on them in a row
		 * (an empty record of another type is refused by conn_rl_record_alert). */
		if (!rec.len && ++c->tls.rl_empty > MAX_EMPTY)
			return fail(c, "too many empty records", TLS_ALERT_UNEXPECTED_MESSAGE);
		switch (rec.type) {
		case TLS_CT_APPLICATION_DATA:
			o->tail += rec.len;
			c->bytes_c2b += rec.len;
			if (rec.len)
				c->tls.rl_warnings = c->tls.rl_empty = c->tls.rl_updates = 0;
			break;
		case TLS_CT_ALERT:
			if (!on_alert(c, o->data + o->tail, rec.len))
				return false;
			break;
		case TLS_CT_HANDSHAKE:
			if (!on_handshake(c, o->data + o->tail, rec.len))
				return false;
			break;
		default:
			return fail(c, "unexpected record", TLS_ALERT_UNEXPECTED_MESSAGE);
		}
	}
	return true;
}

/* The records owed to the client, in the order RFC 8446 §4.6.3 needs: our KeyUpdate before any
 * more data, sealed under the old keys. Returns false if the connection is closing; *blocked when
 * cout has no room yet. */
static bool send_owed(struct conn *c, bool *blocked)
{
	/* our KeyUpdate: update_not_requested */
	static const uint8_t key_update[TLS_HS_HEADER + 1] = { TLS_HS_KEY_UPDATE, 0, 0, 1, 0 };
	static const uint8_t no_reneg[2] = { TLS_ALERT_LEVEL_WARNING, TLS_ALERT_NO_RENEGOTIATION };
	int r = 0;

	*blocked = false;
	if (c->tls.rl_pending & RL_OWE_KEY_UPDATE) {
		r = seal_small(c, TLS_CT_HANDSHAKE, key_update, sizeof(key_update));
		if (r == 0 && rlayer_key_update(c->tls.rl, true) < 0)
			return fail(c, "KeyUpdate: key derivation failed", 0);
		if (r == 0)
			c->tls.rl_pending &= (uint8_t)~RL_OWE_KEY_UPDATE;
	}
	if (r == 0 && (c->tls.rl_pending & RL_OWE_NO_RENEG)) {
		r = seal_small(c, TLS_CT_ALERT, no_reneg, sizeof(no_reneg));
		if (r == 0)
			c->tls.rl_pending &= (uint8_t)~RL_OWE_NO_RENEG;
	}
	if (r == -ENOSPC) {
		*blocked = true;
		return true;
	}
	return r == 0 ? true : fail(c, "cannot seal a record", 0);
}

bool conn_rl_encrypt(struct conn *c, unsigned peer_done)
{
	static const uint8_t close_notify[2] = { TLS_ALERT_LEVEL_WARNING, TLS_ALERT_CLOSE_NOTIFY };
	struct buf *in = &c->bin, *o = &c->cout;
	bool blocked;
	uint32_t n;
	int r;

	if (c->flags & CF_C_NOTIFY)
		return true;
	if (c->tls.rl_pending) {
		if (!send_owed(c, &blocked))
			return false;
		if (blocked)
			return true;
	}
	while (buf_len(in)) {
		if (buf_ready(o) < 0) {
			conn_close(c, CONN_END_NO_MEMORY);
			return false;
		}
		n = MIN(buf_len(in), TLS_MAX_PLAINTEXT);
		if (buf_space(o) < n + RLAYER_OVERHEAD)
			buf_compact(o);
		r = rlayer_seal(c->tls.rl, TLS_CT_APPLICATION_DATA, in->data + in->head, n,
				o->data + o->tail, buf_space(o));
		if (r == -ENOSPC)
			return true; /* cout drains first */
		if (r < 0)
			return fail(c, "cannot seal a record", 0);
		o->tail += (uint32_t)r;
		buf_consume(in, n);
		c->bytes_b2c += n;
	}
	if (!(c->flags & peer_done))
		return true;
	r = seal_small(c, TLS_CT_ALERT, close_notify, sizeof(close_notify));
	if (r == 0)
		c->flags |= CF_C_NOTIFY;
	return r == 0 || r == -ENOSPC ? true : fail(c, "cannot seal a record", 0);
}

/* ---- the hand-over from OpenSSL ---- */

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

	if (!c->tls.ssl ||
	    !rlayer_supported(ktls_cipher_of(c->tls.ssl), (uint16_t)SSL_version(c->tls.ssl)))
		return NULL;
	if (!record_aligned(&c->tls.ssl_rx) || SSL_pending(c->tls.ssl) ||
	    ktls_session_keys(c->tls.ssl, &c->tls.tx_rec, &keys, &seq))
		return NULL;
	if (keys.version == TLS1_3_VERSION)
		len = ktls_traffic_secrets(c->tls.ssl, tx_secret, rx_secret);
	if (len >= 0)
		rl = rlayer_new(&keys, &seq, tx_secret, rx_secret, (size_t)len);
	ktls_keys_wipe(&keys);
	OPENSSL_cleanse(tx_secret, sizeof(tx_secret));
	OPENSSL_cleanse(rx_secret, sizeof(rx_secret));
	return rl;
}

bool conn_rl_take_over(struct conn *c)
{
	c->tls.rl = session_rlayer(c);
	return c->tls.rl != NULL;
}

int conn_rl_peek_close_notify(struct conn *c)
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

void conn_rl_free_ssl(struct conn *c)
{
	SSL_free(c->tls.ssl);
	c->tls.ssl = NULL;
}
