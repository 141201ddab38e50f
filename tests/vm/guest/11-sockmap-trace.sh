#!/bin/sh
# Finds where in the kernel TLS_TX fails with EINVAL on a socket that is in a sockmap: runs
# "ktls_probe -t" (plain socket into a sockmap, then TCP_ULP "tls", then TLS_TX) under ftrace's
# function_graph tracer rooted at tls_setsockopt, with kretprobes printing the return value of
# each TLS setup function. Findings, not pass/fail: exits 0, or 77 without tracefs.
# vm-files: $VMTEST_BUILD/ktls_probe
T=/sys/kernel/tracing
[ -d $T/events ] || mount -t tracefs nodev $T 2>/dev/null || { echo "no tracefs"; exit 77; }
[ -w $T/current_tracer ] || { echo "no tracefs"; exit 77; }
echo 0 >$T/tracing_on
: >$T/trace
for f in tls_setsockopt tls_set_device_offload tls_set_sw_offload init_ctx_tx \
	crypto_alloc_aead tls_sw_fallback_init tls_ctx_create; do
	echo "r:ret_$f $f ret=\$retval" >>$T/kprobe_events 2>/dev/null ||
		echo "(no kretprobe for $f)"
done
echo 1 >$T/events/kprobes/enable 2>/dev/null
echo 8 >$T/max_graph_depth
echo tls_setsockopt >$T/set_graph_function
echo function_graph >$T/current_tracer || echo "(no function_graph tracer)"
echo 1 >$T/tracing_on
"$VMTEST_BUILD/ktls_probe" -t
echo 0 >$T/tracing_on
echo "--- ftrace (function_graph from tls_setsockopt, kretprobes) ---"
grep -v '^#' $T/trace | sed 's/^ *[0-9]*) *//' | grep -v '^ *$' | head -200
echo nop >$T/current_tracer
echo 0 >$T/events/kprobes/enable 2>/dev/null
: >$T/kprobe_events
exit 0
