/* conn_rl — the client side of the userspace tier on ktlsd's record layer (rlayer.h), once the
 * handshake's SSL is freed: the two pipeline stages SSL_read and SSL_write were (cin → bout,
 * bin → cout), and the post-handshake messages OpenSSL used to answer:
 *
 *   close_notify   the client's ends its direction (as does a FIN); ours follows the backend's FIN
 *   alerts         a fatal alert from the client ends the connection with a log line; TLS 1.2
 *                  warnings are ignored, as OpenSSL does, four in a row (the fifth is fatal)
 *   KeyUpdate      TLS 1.3: followed, and answered with our own when the client asks for it
 *   renegotiation  TLS 1.2: a ClientHello is refused with a no_renegotiation warning, as
 *                  OpenSSL with SSL_OP_NO_RENEGOTIATION does; any other handshake message is
 *                  unexpected_message
 *   bad records    a record that fails authentication or is malformed gets the fatal alert RFC
 *                  8446 §6.2 names (where OpenSSL 3.0 names another, OpenSSL's), then the
 *                  connection closes; so do more than 32 empty records, or 32 KeyUpdates, in a
 *                  row (docs/security.md, "Alerts")
 *
 * Both return false once the connection is closing. */
#ifndef KTLSD_CONN_RL_H
#define KTLSD_CONN_RL_H

#include <stdbool.h>
#include <stdint.h>

struct conn;

/* The fatal alert (RFC 8446 §6.2) for an alert or handshake record of n bytes p that the client
 * sent after the handshake under protocol version (TLS1_2_VERSION, TLS1_3_VERSION), or 0 when
 * the record is well-formed: an alert of two bytes, a TLS 1.3 KeyUpdate alone in its record, a
 * TLS 1.2 ClientHello (refused, not fatal). */
uint8_t conn_rl_record_alert(uint16_t version, uint8_t type, const uint8_t *p, uint32_t n);

/* After the handshake, with no kernel TLS for the session (handoff.h): moves the client side from
 * OpenSSL's record layer to ktlsd's own when the session allows it: an AEAD suite rlayer has, and
 * OpenSSL holding no unread plaintext and no part of a record. True when c->tls.rl took over; the
 * caller then writes the handshake line (which reads the SSL) and calls conn_rl_free_ssl. False
 * leaves c as it was. */
bool conn_rl_take_over(struct conn *c);
/* Frees the client's SSL once nothing needs it any more. */
void conn_rl_free_ssl(struct conn *c);
/* Whether the client's first record after the handshake (at the start of cin) is a close_notify,
 * opened with a throwaway copy of the session's keys: nothing is consumed, and OpenSSL is left
 * holding none of the client's plaintext, so conn_rl_take_over still works afterwards. 1 or 0;
 * -EOPNOTSUPP when rlayer cannot carry the session. */
int conn_rl_peek_close_notify(struct conn *c);

/* Opens the client's records from cin into bout while bout has room. */
bool conn_rl_decrypt(struct conn *c);
/* Seals bin into records in cout while cout has room, then close_notify once the backend's
 * direction is finished (peer_done: CF_BIN_EOF, or CF_B_DONE with backend TLS). */
bool conn_rl_encrypt(struct conn *c, unsigned peer_done);

#endif
