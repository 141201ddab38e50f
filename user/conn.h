/* conn — the primitives every part of a connection shares: entering a state, posting I/O through
 * the seam, the handshake report, closing and freeing. The data is in conn_data.h. */
#ifndef KTLSD_CONN_H
#define KTLSD_CONN_H

#include "conn_data.h"
#include "conn_end.h"

/* Enters state s; a transition conn.c's table does not allow is logged as a bug (and counted,
 * conn_bad_transitions) but carried out. */
void conn_enter(struct conn *c, enum conn_state s);
const char *conn_state_name(enum conn_state s);
extern unsigned long conn_bad_transitions;

/* Helpers for tiers: post a recv/send on one side if none is in flight and there is room/data. */
void conn_post_recv(struct conn *c, bool client);
void conn_post_send(struct conn *c, bool client);
/* A one-shot poll tagged op on fd, unless op is in flight. */
void conn_post_poll(struct conn *c, int fd, unsigned events, unsigned op);
/* Cancels op if it is in flight (its completion still arrives). */
void conn_cancel(struct conn *c, unsigned op);
/* Shuts a side for writing once (propagates a half-close). */
void conn_shutdown_wr(struct conn *c, bool client);
/* Frees an empty buffer's memory (a buffer is allocated only while it holds data). */
void conn_release_if_empty(struct buf *b);

/* The connection's one handshake line and its accounting (stats, the BPF conns entry), once:
 * later calls do nothing. end is CONN_END_OK or why it ended; detail, when not NULL, is printed
 * instead of end's name (OpenSSL's error, say). Called when the tier is known, or at close for
 * connections that never got one. */
void conn_report(struct conn *c, enum conn_end end, const char *detail);

/* Starts closing: cancels what is in flight. The connection is freed when nothing remains in
 * flight, at the end of the completion being handled, so callers may still touch c after this.
 * end CONN_END_CLOSED = a clean end. Tiers call this. */
void conn_close(struct conn *c, enum conn_end end);
/* Enters FLUSH: closes once what cout holds has reached the client (an alert a TLS error queued
 * there), or when timeouts.close_ms passes first; the client gets nothing more. */
void conn_close_after_flush(struct conn *c, enum conn_end end);
/* conn_close, then free at once if nothing is in flight: for callers outside a completion. */
void conn_abort(struct conn *c, enum conn_end end);
/* The last step of every entry point: a closing connection with nothing in flight is freed. */
void conn_settle(struct conn *c);

/* Puts c on tier dp: the tiers' fallback (the sockmap handover failed) and tier.c's choice. A
 * connection already reported moves its gauges and its conns entry along. */
void conn_set_tier(struct conn *c, const struct dp_ops *dp);

/* The worker's list (env->conns). */
void conn_list_add(struct conn_env *env, struct conn *c);
void conn_list_del(struct conn_env *env, struct conn *c);

#endif
