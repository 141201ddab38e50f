// SPDX-License-Identifier: GPL-2.0
/* ktlsd.bpf.c — the sockmap datapath: a stream parser + stream verdict pair attached to the
 * sockhash. Both sockets of a connection sit in the sockhash (keyed by socket cookie); the verdict
 * looks up the partner of the socket a message arrived on (peers) and redirects the message to
 * the partner's egress, so the bytes never leave the kernel. It stamps the connection's entry in
 * conns with the time (the daemon then fills in the bytes each way from TCP's counters: what the
 * destination took, rather than what entered its queue) and counts messages and bytes in the
 * per-CPU counters, which is what `bpftool map dump` shows (docs/bpftool.md).
 *
 * Redirects go through a second sockhash, targets, which has no programs: the daemon puts both
 * sockets of a connection in targets before either enters sockhash. A socket in sockhash may
 * receive a message at once, and its partner must already be a redirect target then: with one
 * map, a message arriving between the two insertions found no partner and was dropped (seen
 * under load on Linux 6.18: a backend then read the client's data without its first bytes).
 * Bytes that reach a socket before it enters sockhash stay in its receive queue until the
 * daemon has both sockets in place (docs/notes/sockmap.md, "Fixed: bytes lost between the two
 * insertions").
 *
 * The daemon fills peers and conns before a socket enters the maps and takes the socket out of
 * sockhash, then targets, before it removes the entries, so a message never finds a half-made
 * pair; when it does anyway (the daemon was killed) it is dropped and counted as such. */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

#include "ktlsd_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * KTLSD_MAX_CONNS);
	__type(key, __u64);   /* socket cookie */
	__type(value, __u64); /* 8 bytes: `bpftool map dump` reads back the cookie */
} sockhash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * KTLSD_MAX_CONNS);
	__type(key, __u64);   /* socket cookie */
	__type(value, __u64); /* as in sockhash */
} targets SEC(".maps");	      /* no programs: only where the verdict redirects to */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the connections */
	__uint(max_entries, 2 * KTLSD_MAX_CONNS);
	__type(key, __u64); /* socket cookie */
	__type(value, struct ktlsd_peer);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KTLSD_MAX_CONNS);
	__type(key, __u64); /* client socket cookie */
	__type(value, struct ktlsd_conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, KTLSD_MAX_COUNTERS);
	__type(key, struct ktlsd_counter_key);
	__type(value, struct ktlsd_counter);
} counters SEC(".maps");

static __always_inline void count(__u32 listener, enum ktlsd_reason reason, __u32 dir, __u32 len)
{
	struct ktlsd_counter_key k = { .listener = listener, .reason = reason, .dir = dir };
	struct ktlsd_counter *v = bpf_map_lookup_elem(&counters, &k);

	if (!v) {
		struct ktlsd_counter zero = {};

		bpf_map_update_elem(&counters, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&counters, &k);
		if (!v)
			return;
	}
	v->msgs++;
	v->bytes += len;
}

/* Every skb is a message: the parser only exists because the verdict needs a strparser to read
 * from the socket's receive queue in order. */
SEC("sk_skb/stream_parser")
int ktlsd_parser(struct __sk_buff *skb)
{
	return skb->len;
}

SEC("sk_skb/stream_verdict")
int ktlsd_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct ktlsd_peer *p = bpf_map_lookup_elem(&peers, &cookie);
	struct ktlsd_conn *c;
	__u32 len = skb->len;
	int ret;

	if (!p) {
		count(0, KTLSD_REASON_NO_PEER, 0, len);
		return SK_DROP;
	}
	ret = bpf_sk_redirect_hash(skb, &targets, &p->peer, 0);
	if (ret != SK_PASS) {
		count(p->listener, KTLSD_REASON_REDIRECT_FAILED, p->dir, len);
		return SK_DROP;
	}
	c = bpf_map_lookup_elem(&conns, &p->conn);
	if (c)
		c->last_ns = bpf_ktime_get_ns();
	count(p->listener, c ? KTLSD_REASON_REDIRECT : KTLSD_REASON_NO_CONN, p->dir, len);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
