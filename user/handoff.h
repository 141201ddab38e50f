/* handoff — moves a connection whose handshake is done from OpenSSL to kernel TLS: waits for our
 * last handshake bytes to leave, checks that nothing of the client's is buffered in userspace,
 * derives and installs the keys (ktls.c), frees every OpenSSL object and buffer, and attaches the
 * ktls-splice tier. When the kernel cannot take the session, the same keys can go to ktlsd's own
 * record layer instead (handoff_rlayer), and the SSL is freed all the same. */
#ifndef KTLSD_HANDOFF_H
#define KTLSD_HANDOFF_H

#include <stdbool.h>

struct conn;

enum handoff_result {
	HANDOFF_DONE, /* the kernel has the session: c goes on dp_splice; call handoff_release */
	HANDOFF_WAIT, /* our output is still draining: call again on the next pump */
	HANDOFF_USERSPACE, /* stay on the userspace tier; c->tier_note says why */
	HANDOFF_FATAL,	   /* the socket is half-configured: the connection is closing */
};

enum handoff_result handoff_try(struct conn *c);
/* After HANDOFF_DONE (and the handshake log line, which still reads the SSL): frees the SSL and
 * every userspace buffer. The connection holds no OpenSSL object or record buffer after this. */
void handoff_release(struct conn *c);

/* After HANDOFF_USERSPACE: moves the client side from OpenSSL's record layer to ktlsd's own
 * (rlayer.h) when the session allows it: an AEAD suite rlayer has, and OpenSSL holding no
 * unread plaintext and no part of a record. True when c->rl took over; the caller then logs the
 * handshake line (which reads the SSL) and calls handoff_free_ssl. False leaves c as it was. */
bool handoff_rlayer(struct conn *c);
/* Whether the client's first record after the handshake (at the start of cin) is a close_notify,
 * opened with a throwaway copy of the session's keys: nothing is consumed, and OpenSSL is left
 * holding none of the client's plaintext, so handoff_rlayer still works afterwards. 1 or 0;
 * -EOPNOTSUPP when rlayer cannot carry the session. */
int handoff_peek_close_notify(struct conn *c);
/* Frees the client's SSL once nothing needs it any more. */
void handoff_free_ssl(struct conn *c);

#endif
