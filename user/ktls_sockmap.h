/* ktls_sockmap — the startup probe for the ktls-sockmap tier: can a kTLS socket be a member of a
 * BPF sockmap on this kernel? Measured, not assumed (docs/notes/ktls-sockmap.md has the findings
 * for Debian's 6.1 and 6.12 and the kernel code behind them). Raw bpf(2), no programs: membership
 * is what the kernels refuse, whatever the map carries. */
#ifndef KTLSD_KTLS_SOCKMAP_H
#define KTLSD_KTLS_SOCKMAP_H

#include <stddef.h>

/* Tries both orders on loopback sockets: TCP_ULP "tls" and TLS_TX then insertion into a scratch
 * sockmap, and insertion then TCP_ULP "tls" and TLS_TX. Returns 0 when a socket ends up in the map
 * with kTLS keys, else a negative errno with the reason, for operators, in why. Call only when the
 * kernel has kTLS. */
int ktls_sockmap_probe(char *why, size_t len);

#endif
