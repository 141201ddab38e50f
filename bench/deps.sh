#!/bin/sh
# deps.sh — what `make bench` needs beyond tools/deps.sh: the peers (HAProxy, nginx with the stream
# module, stunnel) and gnuplot for the plots. Installed here, not in tools/deps.sh, so that
# `make test` stays lean. apt-get as root; policy-rc.d keeps the packages' services from starting.
set -eu

PKGS="haproxy nginx-light libnginx-mod-stream stunnel4 gnuplot-nox openssl util-linux"

m=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || m="$m $p"
done
[ -z "$m" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "bench/deps.sh: missing:$m (run as root, or: sudo apt-get install$m)" >&2
	exit 1
fi
echo "bench/deps.sh: installing$m"
export DEBIAN_FRONTEND=noninteractive
created=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	created=1
fi
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $m >/dev/null
[ -z "$created" ] || rm -f /usr/sbin/policy-rc.d
