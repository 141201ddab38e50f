/* backend — server pools and balancing. Picking is lock-free; connecting is the caller's. */
#ifndef KTLSD_BACKEND_H
#define KTLSD_BACKEND_H

#include <stdatomic.h>
#include <stddef.h>

#include "config.h"

struct backend_rt {
	const struct cfg_backend *cfg;
	atomic_uint next; /* round-robin cursor */
};

/* The first server to try for a new connection. */
size_t backend_first(struct backend_rt *b);
/* The server for try number attempt (0-based) of a connection that started at first; attempts
 * run through every server once. Returns NULL when they are exhausted. */
const struct cfg_addr *backend_server(const struct backend_rt *b, size_t first, unsigned attempt);

#endif
