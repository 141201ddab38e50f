/* ktlsd_bpf.h — what the BPF programs (bpf/ktlsd.bpf.c) and the daemon (user/bpfmap.c) share: the
 * keys and values of the pinned maps, with fixed-width kernel types, so `bpftool map dump` shows
 * them by name through BTF. Nothing else belongs here. */
#ifndef KTLSD_BPF_H
#define KTLSD_BPF_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* The datapath tiers: the one numbering of the daemon's config (enum cfg_datapath), its
 * statistics and its tier ops (user/dp.h), and of the conns map's tier field. */
enum ktlsd_tier {
	KTLSD_TIER_NONE = 0, /* not forwarding yet */
	KTLSD_TIER_USERSPACE = 1,
	KTLSD_TIER_KTLS_SPLICE = 2,
	KTLSD_TIER_KTLS_SOCKMAP = 3,
	KTLSD_TIER_SOCKMAP = 4,
	KTLSD_TIER_N
};

/* The state a connection's conns entry records (struct ktlsd_conn.state), as ktlsd last wrote
 * it there. bpftool users read these numbers: they stay fixed (2 is unused). */
enum ktlsd_state {
	KTLSD_STATE_FORWARDING = 1,  /* both directions open */
	KTLSD_STATE_HALF_CLOSED = 3, /* one direction has ended */
	KTLSD_STATE_CLOSING = 4,     /* ktlsd is closing the connection */
};

enum ktlsd_dir {
	KTLSD_DIR_C2B = 0, /* client → backend */
	KTLSD_DIR_B2C = 1, /* backend → client */
};

/* What the stream verdict did with a message. */
enum ktlsd_reason {
	KTLSD_REASON_REDIRECT = 0, /* sent to the other socket of the connection */
	KTLSD_REASON_NO_PEER = 1,  /* the socket is not (or no longer) paired: dropped */
	KTLSD_REASON_NO_CONN =
	    2, /* its connection has no conns entry: redirected, not counted there */
	KTLSD_REASON_REDIRECT_FAILED = 3, /* the peer left the sockhash: dropped */
};

/* conns: one entry per connection, keyed by the client socket's cookie (SO_COOKIE). */
struct ktlsd_conn {
	__u32 listener; /* index of the listener in the config the connection started under */
	enum ktlsd_state state;
	enum ktlsd_tier tier;
	__u16 tls_version;    /* 0x0303 = TLS 1.2, 0x0304 = TLS 1.3, 0 = not terminated */
	__u16 cipher_suite;   /* IANA number, 0 when none */
	__u64 backend_cookie; /* the backend socket's cookie, 0 before it connects */
	__u64 bytes_c2b;      /* payload bytes client → backend (all tiers; sockmap: from TCP) */
	__u64 bytes_b2c;      /* payload bytes backend → client */
	__u64 start_ns;	      /* CLOCK_MONOTONIC (bpf_ktime_get_ns) at accept */
	__u64 last_ns;	      /* last time bytes moved (sockmap: the verdict or the daemon) */
	char cipher[32];      /* OpenSSL's name of the cipher, "" when none */
};

/* peers: socket cookie → its partner in the same connection (sockmap tier only). */
struct ktlsd_peer {
	__u64 peer; /* the other socket's cookie, the key of its sockhash entry */
	__u64 conn; /* the conns key (client socket cookie) */
	__u32 listener;
	__u32 dir; /* enum ktlsd_dir of the bytes this socket receives */
};

/* counters (per-CPU hash): messages and bytes by listener, verdict reason and direction. */
struct ktlsd_counter_key {
	__u32 listener;
	__u16 reason; /* enum ktlsd_reason */
	__u16 dir;    /* enum ktlsd_dir */
};

struct ktlsd_counter {
	__u64 msgs;
	__u64 bytes;
};

#define KTLSD_MAX_CONNS 262144
#define KTLSD_MAX_COUNTERS 4096

#endif
