#!/bin/sh
# deps.sh — the Debian 12 packages ktlsd needs to build, run the demo and run its tests.
#   deps.sh install   install them all (apt-get; needs root)
#   deps.sh check     install only what is missing (as root), or say what to install
set -eu

PKGS="build-essential pkg-config libssl-dev liburing-dev libjansson-dev libcmocka-dev libgnutls28-dev \
libbpf-dev bpftool clang clang-format llvm openssl curl gnutls-bin python3 python3-pytest sslscan \
qemu-system-x86 busybox-static cpio kmod xz-utils zstd iproute2 valgrind slowhttptest python3-scapy \
util-linux"

missing() {
	for p in $PKGS; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" ||
			printf '%s ' "$p"
	done
}

install() {
	if [ "$(id -u)" != 0 ]; then
		echo "deps.sh: run as root (or: sudo apt-get install $*)" >&2
		exit 1
	fi
	echo "deps.sh: installing $*"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

case "${1:-check}" in
install)
	# shellcheck disable=SC2086
	install $PKGS
	;;
check)
	m=$(missing)
	# shellcheck disable=SC2086
	[ -z "$m" ] || install $m
	;;
*)
	echo "usage: deps.sh install|check" >&2
	exit 2
	;;
esac
