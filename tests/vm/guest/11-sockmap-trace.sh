#!/bin/sh
# Traces two kTLS + sockmap findings of ktls_probe (docs/notes/ktls-sockmap.md, "Why") with ftrace:
#   in-map           TLS_TX on a socket that is in a sockmap fails with EINVAL: function_graph
#                    rooted at tls_setsockopt, kretprobes on the TLS setup functions.
#   deleted-verdict  after deletion from a map with a stream verdict, SOL_TLS options fail with
#                    ENOPROTOOPT: kretprobes on the psock teardown and on the setsockopt that
#                    TLS_TX reaches.
# Findings, not pass/fail: exits 0, or 77 without tracefs.
# vm-files: $VMTEST_BUILD/ktls_probe
T=/sys/kernel/tracing
[ -d $T/events ] || mount -t tracefs nodev $T 2>/dev/null || { echo "no tracefs"; exit 77; }
[ -w $T/current_tracer ] || { echo "no tracefs"; exit 77; }

# trace MODE GRAPH_ROOT FUNCTION...: kretprobes on each FUNCTION, function_graph from GRAPH_ROOT.
trace() {
	mode=$1 root=$2
	shift 2
	echo 0 >$T/tracing_on
	: >$T/trace
	for f in "$@"; do
		echo "r:ret_$f $f ret=\$retval" >>$T/kprobe_events 2>/dev/null ||
			echo "(no kretprobe for $f)"
	done
	echo 1 >$T/events/kprobes/enable 2>/dev/null
	echo 8 >$T/max_graph_depth
	echo "$root" >$T/set_graph_function
	echo function_graph >$T/current_tracer || echo "(no function_graph tracer)"
	echo 1 >$T/tracing_on
	"$VMTEST_BUILD/ktls_probe" -t "$mode"
	echo 0 >$T/tracing_on
	echo "--- ftrace $mode (function_graph from $root, kretprobes) ---"
	grep -v '^#' $T/trace | sed 's/^ *[0-9]*) *//' | grep -v '^ *$' | head -200
	echo nop >$T/current_tracer
	echo 0 >$T/events/kprobes/enable 2>/dev/null
	: >$T/kprobe_events
}

trace in-map tls_setsockopt tls_setsockopt tls_set_device_offload tls_set_sw_offload \
	crypto_alloc_aead tls_ctx_create
trace deleted-verdict tls_setsockopt tls_setsockopt tls_update tcp_bpf_update_proto \
	sk_psock_drop sock_map_delete_elem tcp_setsockopt ip_setsockopt tls_ctx_create
exit 0
