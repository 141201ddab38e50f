/* handoff — moves a connection whose handshake is done from OpenSSL to kernel TLS: waits for our
 * last handshake bytes to leave, checks that nothing of the client's is buffered in userspace,
 * derives and installs the keys (ktls.h); the ktls-splice tier (dp_splice.h) calls it. When the
 * kernel cannot take the session, the same keys can go to ktlsd's own record layer instead
 * (conn_rl_take_over, conn_rl.h). */
#ifndef KTLSD_HANDOFF_H
#define KTLSD_HANDOFF_H

#include "ktls.h"

struct conn;

enum handoff_result {
	HANDOFF_DONE,	   /* prepare: the keys are ready; install: the kernel has the session */
	HANDOFF_WAIT,	   /* our output is still draining: call again on the next pump */
	HANDOFF_USERSPACE, /* not to the kernel: c->tier_note says why */
	HANDOFF_FATAL,	   /* the socket is half-configured: the connection is closing */
};

/* Whether c's session can go to the kernel now, and if so (HANDOFF_DONE) its keys and sequence
 * numbers, for handoff_install (wipe keys if it is not called). */
enum handoff_result handoff_prepare(struct conn *c, struct ktls_keys *keys, struct ktls_seq *seq);
/* Installs keys (wiped before return) on the client socket: HANDOFF_DONE, HANDOFF_USERSPACE when
 * the socket is as it was, HANDOFF_FATAL when half-configured (c is closing). */
enum handoff_result handoff_install(struct conn *c, struct ktls_keys *keys,
				    const struct ktls_seq *seq);

#endif
