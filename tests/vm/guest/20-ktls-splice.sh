#!/bin/sh
# The ktls-splice tier through the real daemon with real clients (tests/vm/ktls_suite.py).
# vm-files: $KTLSD_BUILD/ktlsd $KTLSD_BUILD/fixtures $VMTEST_BUILD/gnutls_client
# vm-files: /usr/bin/python3.11 /usr/lib/python3.11 /usr/bin/openssl /usr/lib/ssl/openssl.cnf
# vm-files: /usr/bin/gnutls-cli tools/demo_backend.py tests/vm/ktls_suite.py
exec /usr/bin/python3.11 tests/vm/ktls_suite.py
