#!/bin/sh
# Proves kTLS TX/RX for every cipher and version and prints the sockmap findings
# (tests/vm/ktls_probe.c), then the AEAD drivers the kernel has for kTLS's ciphers: the crypto
# API picks the highest priority.
# vm-files: $VMTEST_BUILD/ktls_probe
"$VMTEST_BUILD/ktls_probe"
rc=$?
echo "AEAD drivers for kTLS (crypto API name -> driver, priority):"
awk '$1 == "name" { name = $3 } $1 == "driver" { driver = $3 }
	$1 == "priority" && name ~ /^(gcm|ccm|rfc7539)\(/ { print "  " name " -> " driver ", " $3 }' /proc/crypto
exit $rc
