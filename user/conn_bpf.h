/* conn_bpf — a connection's entry in the pinned conns map (include/ktlsd_bpf.h), so that
 * `bpftool map dump pinned PIN/conns` lists every forwarding connection on every tier: created
 * when its tier is known, kept current by the worker's tick, removed when it is freed.
 *
 * On the sockmap tier the verdict program counts the bytes in the entry: the tick reads them
 * back into the connection (for ktlsctl, the metrics and the idle timeout) and never writes the
 * entry again. On the other tiers ktlsd counts and the tick writes. No-ops without BPF. */
#ifndef KTLSD_CONN_BPF_H
#define KTLSD_CONN_BPF_H

struct conn;

void conn_bpf_open(struct conn *c);
void conn_bpf_sync(struct conn *c);
void conn_bpf_close(struct conn *c);

#endif
