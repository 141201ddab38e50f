/* ratelog — logging that an attacker cannot turn into a flood of log lines: at most one line per
 * interval for each thing that is logged, carrying how many were left out since the last one.
 * Safe from any thread (the refusals it is for happen on every worker at once). */
#ifndef KTLSD_RATELOG_H
#define KTLSD_RATELOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RATELOG_INTERVAL_MS 1000

/* Zero-initialised; one per message kind (e.g. per limit). */
struct ratelog {
	atomic_uint_least64_t next_ms;	  /* no line before this time */
	atomic_uint_least64_t suppressed; /* left out since the last line */
};

/* True when the caller should log now; *suppressed is then how many events were left out since
 * the last line (the caller prints it). False counts the event as left out. */
bool ratelog_allow(struct ratelog *r, uint64_t now_ms, uint64_t *suppressed);

#endif
