/* metrics — the Prometheus text exposition (format 0.0.4) of the counters in stats.h and the
 * certificates' expiry, served over HTTP/1.0 at GET /metrics by the control thread. The series
 * are documented in docs/metrics.md. */
#ifndef KTLSD_METRICS_H
#define KTLSD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct reload;

/* The exposition text, malloc'd, in *out. */
int metrics_render(struct reload *rl, char **out, size_t *len) __must_check;
/* The whole HTTP response to the request head req (complete says whether it ended with an empty
 * line): 200 with the metrics for GET or HEAD /metrics, else 400, 404 or 405. */
int metrics_http(struct reload *rl, const char *req, size_t len, bool complete, char **out,
		 size_t *outlen) __must_check;

#endif
