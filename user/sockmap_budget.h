/* sockmap_budget — which connections the sockmap backlog guard resets (dp_sockmap.c): pure
 * arithmetic, unit-tested in test_sockmap.
 *
 * The kernel gives a sockhash redirect no backpressure, so what the destinations have not taken
 * yet waits in kernel memory (docs/notes/sockmap.md, "No backpressure"; the rule is in
 * docs/datapath.md, "The sockmap backlog budget"). limits.sockmap_backlog is a budget for those
 * bytes over every connection of every worker together. While the total is over it, connections
 * are reset from the largest backlog down until the rest fit; there is no per-connection floor.
 * Each worker can only reset its own connections, so each publishes the largest backlog it
 * holds, and a worker resets one of its own only while none elsewhere is larger: the one holding
 * the largest goes first, whichever worker has it. */
#ifndef KTLSD_SOCKMAP_BUDGET_H
#define KTLSD_SOCKMAP_BUDGET_H

#include <stddef.h>
#include <stdint.h>

struct sockmap_backlog {
	uint64_t bytes; /* on their way inside the kernel at the connection's last reading */
	void *conn;
};

/* v[0..n) are one worker's connections, total the bytes on their way over all connections of all
 * workers, elsewhere the largest backlog another worker holds. Sorts v largest first and returns
 * k: v[0..k) are to be reset. Counting each reset off the total, it takes the next largest while
 * the total is over budget, that connection holds something and none elsewhere is larger. */
size_t sockmap_budget_pick(struct sockmap_backlog *v, size_t n, uint64_t total, uint64_t budget,
			   uint64_t elsewhere);

#endif
