/* handoff — moves a connection whose handshake is done from OpenSSL to kernel TLS: waits for our
 * last handshake bytes to leave, checks that nothing of the client's is buffered in userspace,
 * derives and installs the keys (ktls.h), then frees every OpenSSL object and buffer for the
 * ktls-splice tier. When the kernel cannot take the session, the same keys can go to ktlsd's own
 * record layer instead (conn_rl_take_over, conn_rl.h). */
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

#endif
