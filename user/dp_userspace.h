/* dp_userspace — the userspace tier: TLS records over the connection's buffers for tls listeners
 * (ktlsd's record layer, conn_rl.h, when the session allows it, else OpenSSL's), plain buffer
 * forwarding for tcp ones. Every connection can have it: it is where the others fall back to.
 * An idle connection on it is parked (its buffers freed, its sockets watched by polls). */
#ifndef KTLSD_DP_USERSPACE_H
#define KTLSD_DP_USERSPACE_H

#include "dp.h"

extern const struct dp_ops dp_userspace;
/* Called by the worker's timer after every connection's tick: returns the memory of connections
 * parked since the previous tick to the kernel. */
void dp_userspace_tick_done(void);

#endif
