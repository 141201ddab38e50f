/* conn_bpf — a connection's entry in the pinned conns map (include/ktlsd_bpf.h), so that
 * `bpftool map dump pinned PIN/conns` lists every forwarding connection on every tier: due
 * when its tier is known, written by the worker's next tick (within 100 ms) and kept current by
 * the ticks after it, removed when it is freed. A connection that ends before a tick, such as a
 * new connection per request, costs no bpf() or getsockopt() call at all (docs/bpftool.md).
 *
 * On the sockmap tier the verdict program counts the bytes in the entry: the tick reads them
 * back into the connection (for ktlsctl, the metrics and the idle timeout) and never writes the
 * entry again. On the other tiers ktlsd counts and the tick writes. No-ops without BPF. */
#ifndef KTLSD_CONN_BPF_H
#define KTLSD_CONN_BPF_H

struct conn;

/* Marks the entry due; takes the TLS version and suite now, while the SSL is there. */
void conn_bpf_open(struct conn *c);
void conn_bpf_sync(struct conn *c);
void conn_bpf_close(struct conn *c);

#endif
