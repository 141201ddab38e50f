/* sockmap_drain — when one direction of a sockmap connection has delivered everything, so that
 * its end (the source's FIN) may be passed on with shutdown(SHUT_WR) on the destination.
 *
 * The kernel forwards the bytes out of ktlsd's sight: the stream verdict redirects each message
 * into the destination's psock queue, from which a kernel worker writes it to the destination
 * socket. A FIN on the source is seen (POLLRDHUP) before the verdict may have taken the last
 * bytes, and the last redirected bytes may still wait in the psock queue; a shutdown then would
 * lose them. So a direction is drained only when the numbers agree: every byte the source
 * received (tcpi_bytes_received, which counts the FIN as one) was either read by ktlsd before the
 * handover or redirected by the verdict (counted in the conns map), and the destination's write
 * queue has taken every redirected byte (tcpi_bytes_acked + SIOCOUTQ, relative to the handover).
 * Measured on Linux 6.18 (docs/datapath.md). Pure arithmetic: unit-tested in test_sockmap. */
#ifndef KTLSD_SOCKMAP_DRAIN_H
#define KTLSD_SOCKMAP_DRAIN_H

#include <stdbool.h>
#include <stdint.h>

struct sockmap_dir {
	uint64_t user;	      /* bytes ktlsd itself read from the source before the handover */
	uint64_t wbase;	      /* destination's bytes written (acked + queued) at the handover */
	uint64_t redir;	      /* bytes the verdict redirected since the handover */
	uint64_t src_rcvd;    /* source's tcpi_bytes_received: data bytes, plus 1 once a FIN came */
	uint64_t dst_written; /* destination's tcpi_bytes_acked + SIOCOUTQ, now */
	bool src_eof;	      /* the source's FIN arrived */
};

static inline bool sockmap_dir_drained(const struct sockmap_dir *d)
{
	return d->src_eof && d->src_rcvd == d->user + d->redir + 1 &&
	       d->dst_written - d->wbase == d->redir;
}

#endif
