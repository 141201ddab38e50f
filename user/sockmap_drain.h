/* sockmap_drain — what one direction of a sockmap connection has delivered, from TCP's own
 * counters: how many bytes it forwarded, how many wait inside the kernel, and when its end (the
 * source's FIN) may be passed on with shutdown(SHUT_WR) on the destination.
 *
 * The kernel forwards the bytes out of ktlsd's sight: the stream verdict redirects each message
 * into the destination's psock queue, from which a kernel worker writes it to the destination
 * socket. TCP's own counters say exactly where the bytes are. Every byte the source received
 * (tcpi_bytes_received, which counts the FIN as one) was read by ktlsd before the handover, or
 * written by the kernel into the destination (tcpi_bytes_acked + SIOCOUTQ, relative to the
 * handover), or is still on its way: in the source's receive queue or the destination's psock
 * queue. A FIN may follow once nothing is on its way. Pure arithmetic:
 * unit-tested in test_sockmap. */
#ifndef KTLSD_SOCKMAP_DRAIN_H
#define KTLSD_SOCKMAP_DRAIN_H

#include <stdbool.h>
#include <stdint.h>

struct sockmap_dir {
	uint64_t user;	      /* bytes ktlsd itself read from the source before the handover */
	uint64_t wbase;	      /* destination's bytes written (acked + queued) at the handover */
	uint64_t src_rcvd;    /* source's tcpi_bytes_received: data bytes, plus 1 once a FIN came */
	uint64_t dst_written; /* destination's tcpi_bytes_acked + SIOCOUTQ, now */
	bool src_eof;	      /* the source's FIN arrived */
	bool dst_fin;	      /* ktlsd passed it on: dst_written counts that FIN as one byte */
};

/* Bytes the kernel wrote into the destination since the handover. */
static inline uint64_t sockmap_dir_forwarded(const struct sockmap_dir *d)
{
	return d->dst_written - d->wbase - (d->dst_fin ? 1 : 0);
}

/* Bytes the source received that have not reached the destination yet. The two counters are
 * read one after the other, so the destination may be ahead by what arrived in between: 0 then. */
static inline uint64_t sockmap_dir_pending(const struct sockmap_dir *d)
{
	uint64_t in = d->src_rcvd - d->user - (d->src_eof && d->src_rcvd > d->user ? 1 : 0);
	uint64_t out = sockmap_dir_forwarded(d);

	return in > out && in - out < (UINT64_C(1) << 63) ? in - out : 0;
}

static inline bool sockmap_dir_drained(const struct sockmap_dir *d)
{
	return d->src_eof && d->src_rcvd == d->user + sockmap_dir_forwarded(d) + 1;
}

#endif
