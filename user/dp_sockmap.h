/* dp_sockmap — the sockmap tier for tcp and tls-passthrough listeners: both sockets in the BPF
 * sockhash, every byte redirected inside the kernel (bpf/ktlsd.bpf.c). */
#ifndef KTLSD_DP_SOCKMAP_H
#define KTLSD_DP_SOCKMAP_H

#include <stdint.h>

#include "dp.h"

struct conn_env;

extern const struct dp_ops dp_sockmap;
/* The worker's backlog check (OP_SOCKMAP), every SOCKMAP_CHECK_MS while its sockmap connections
 * have bytes on their way: reads them and resets the largest while their total over every
 * worker exceeds budget (limits.sockmap_backlog). */
void dp_sockmap_check(struct conn_env *env, uint64_t budget);
/* Bytes on their way inside the kernel over every sockmap connection (for the metrics). */
uint64_t dp_sockmap_backlog(void);

#endif
