/* stats_conn — what a connection contributes to the counters of stats.h, and the details `ktlsctl
 * connections` shows after the SSL is gone (kernel handoff). Called by conn.c and the worker, on
 * the connection's worker. */
#ifndef KTLSD_STATS_CONN_H
#define KTLSD_STATS_CONN_H

#include "conn_end.h"

struct conn;

/* From conn_report, once per connection: copies SNI, version and cipher for `ktlsctl
 * connections`, counts the handshake (tls listeners, by end's class; a failure under detail, or
 * end's name) and the tier the connection reached. */
void stats_conn_logged(struct conn *c, enum conn_end end, const char *detail);
/* Adds the bytes moved since the last call to the listener's counters (the worker's tick). */
void stats_conn_flush(struct conn *c);
/* From conn_free: the last bytes, the connection leaves the active gauges. */
void stats_conn_freed(struct conn *c);

#endif
