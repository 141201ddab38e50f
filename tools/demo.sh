#!/bin/sh
# demo.sh BUILD — `make run`: demo certificates, the demo backend on 127.0.0.1:8080 and ktlsd with
# config/demo.json on 127.0.0.1:8443, in the foreground until Ctrl-C.
set -eu
build=$1
top=$(cd "$(dirname "$0")/.." && pwd)
demo="$top/$build/demo"
mkdir -p "$demo"
sh "$top/tests/fixtures/mkcert.sh" ca "$demo" ca
sh "$top/tests/fixtures/mkcert.sh" leaf "$demo" server-ec ca ec localhost localhost

/usr/bin/python3 "$top/tools/demo_backend.py" 8080 &
backend=$!
trap 'kill $backend 2>/dev/null; wait $backend 2>/dev/null' EXIT INT TERM

cat <<MSG

  ktlsd demo: TLS on https://localhost:8443 → plain HTTP backend on 127.0.0.1:8080

  Try, from another terminal:
    curl --cacert $demo/ca.pem https://localhost:8443/
    openssl s_client -connect localhost:8443 -servername localhost -CAfile $demo/ca.pem

  Ctrl-C stops the demo.

MSG
"$top/$build/ktlsd" -f -c "$top/config/demo.json" || true
