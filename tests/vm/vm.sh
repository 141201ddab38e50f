#!/usr/bin/env bash
# vm.sh: boot a Debian cloud kernel (which has CONFIG_TLS=m) under QEMU TCG and run one command
# in it. This is the machine every kTLS test runs on; the host kernel has no kTLS.
#
# Usage:
#   tests/vm/vm.sh -k 6.1|6.12 [-b BUILD_DIR] [-f HOST_PATH]... [-e NAME=VALUE]...
#                  [-t SECONDS] [-m MIB] -- COMMAND [ARG]...
#
#   -k  kernel series: 6.1  = newest linux-image-6.1.0-N-cloud-amd64 apt knows,
#                      6.12 = newest linux-image-6.12.N+deb12-cloud-amd64 (from bookworm-security;
#                             bookworm-backports is not needed)
#   -b  build and cache directory (default build/vm)
#   -f  host file or directory to copy into the guest at the same absolute path (repeatable).
#       ELF files bring their shared libraries (ldd) and the dynamic loader; libraries that are
#       only dlopen()ed (OpenSSL providers, engines) must be named with -f.
#   -e  environment variable for the guest command (repeatable)
#   -t  hard timeout for the whole VM run in seconds (default 600)
#   -m  guest memory in MiB (default 1024)
#   COMMAND runs under busybox sh as root in the guest's copy of the current directory, with
#   VMTEST_KERNEL set to the -k value. 127.0.0.1 and ::1 work; the guest has no other network.
#
# The guest's /init mounts proc, sys, devtmpfs, devpts, bpf (/sys/fs/bpf) and tmpfs /dev/shm,
# brings up lo, loads the CPU's crypto drivers (as udev would) and tls.ko, runs COMMAND, prints
# /proc/net/tls_stat and the sentinel line "VMTEST-EXIT=<status>", and powers off. It mounts
# nothing on /tmp: that is a directory of the guest's root, itself a tmpfs (the initramfs), so a
# tree copied from the host's /tmp stays visible. A current directory or -f path under /dev, /proc
# or /sys, which /init does mount over, is refused.
#
# Cache: BUILD_DIR/kernels/<package>_<version>/ keeps vmlinuz and the module archive; a second
# run with the same package neither downloads nor extracts. The console goes to stdout and to
# BUILD_DIR/<series>/console.log; two runs of the same series must not overlap.
#
# Exit status: the guest command's status; 77 if qemu-system-x86_64 is missing (skip); 124 on
# timeout; 125 on any other harness failure (no package, no sentinel on the console).
set -euo pipefail

readonly EXIT_SKIP=77 EXIT_TIMEOUT=124 EXIT_HARNESS=125

# depmod lives in /usr/sbin, which a user's PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# Module directories copied into the guest: kTLS and every crypto driver it may ask for.
readonly MODULE_DIRS=(net/tls crypto lib/crypto arch/x86/crypto)

die() {
	echo "vm.sh: $*" >&2
	exit "$EXIT_HARNESS"
}

# Prints the usage lines of the header and exits with $1.
usage() {
	sed -n '5,7p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit "$1"
}

series=""
build_dir="build/vm"
host_paths=()
guest_env=()
timeout_s=600
mem_mib=1024
while getopts "k:b:f:e:t:m:h" opt; do
	case "$opt" in
	k) series="$OPTARG" ;;
	b) build_dir="$OPTARG" ;;
	f) host_paths+=("$OPTARG") ;;
	e) guest_env+=("$OPTARG") ;;
	t) timeout_s="$OPTARG" ;;
	m) mem_mib="$OPTARG" ;;
	h) usage 0 ;;
	*) usage "$EXIT_HARNESS" ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -gt 0 && -n "$series" ]] || usage "$EXIT_HARNESS"

# What the guest's /init (below) mounts over: a host path under one would be hidden in the guest.
readonly GUEST_MOUNT_POINTS=(/dev /proc /sys)

# Dies if the absolute path $1 (named by $2) lies under one of GUEST_MOUNT_POINTS.
check_guest_path() {
	local mnt
	for mnt in "${GUEST_MOUNT_POINTS[@]}"; do
		[[ "$1" != "$mnt" && "$1" != "$mnt"/* ]] ||
			die "$2 $1 is under $mnt, which the guest's /init mounts over; move it elsewhere"
	done
}
check_guest_path "$(pwd -P)" "the current directory"
for path in "${host_paths[@]}"; do
	check_guest_path "$(realpath -m "$path")" "-f"
done

case "$series" in
6.1) pkg_regex='^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' ;;
6.12) pkg_regex='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$' ;;
*) die "unknown kernel series '$series' (want 6.1 or 6.12)" ;;
esac

if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "vm.sh: SKIP: qemu-system-x86_64 not found (apt-get install qemu-system-x86)" >&2
	exit "$EXIT_SKIP"
fi
for tool in apt-get apt-cache dpkg-deb depmod cpio gzip ldd timeout; do
	command -v "$tool" >/dev/null || die "$tool not found (see the Makefile's deps target)"
done
busybox_bin="$(command -v busybox)" || die "busybox not found (apt-get install busybox-static)"

mkdir -p "$build_dir"
build_dir="$(realpath "$build_dir")"

# Prints the newest package name matching pkg_regex.
newest_package() {
	apt-cache pkgnames "linux-image-$series" | grep -E "$pkg_regex" | sort -V | tail -n1 || true
}

# The apt lists may be empty on a fresh machine; updating them is idempotent, so do it once when
# root and nothing matches.
resolve_package() {
	local name
	name="$(newest_package)"
	if [[ -z "$name" && $EUID -eq 0 ]]; then
		echo "vm.sh: no $series kernel in the apt lists; running apt-get update" >&2
		apt-get update -qq >&2
		name="$(newest_package)"
	fi
	[[ -n "$name" ]] || die "no package matches $pkg_regex; the 6.1 kernels are in bookworm" \
		"and bookworm-security, the 6.12 ones in bookworm-security: check the apt sources" \
		"and run apt-get update"
	echo "$name"
}

# Downloads and unpacks the kernel package into $1 (made atomically through a temporary
# directory): vmlinuz, kernel-version, and modules.cpio.gz holding MODULE_DIRS decompressed
# under usr/lib/modules/<version>/ with depmod's indexes, so that modprobe resolves every
# dependency and crypto alias in the guest.
fetch_kernel() {
	local dest="$1" tmp kver dir
	tmp="$dest.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp/stage"
	echo "vm.sh: downloading $pkg=$pkg_version" >&2
	(cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "$pkg=$pkg_version" >&2)
	dpkg-deb -x "$tmp"/*.deb "$tmp/root"
	kver="$(ls "$tmp/root/lib/modules")"
	for dir in "${MODULE_DIRS[@]}"; do
		mkdir -p "$tmp/stage/usr/lib/modules/$kver/kernel/$dir"
		cp -a "$tmp/root/lib/modules/$kver/kernel/$dir/." \
			"$tmp/stage/usr/lib/modules/$kver/kernel/$dir/"
	done
	cp -a "$tmp/root/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} \
		"$tmp/stage/usr/lib/modules/$kver/"
	find "$tmp/stage" -name '*.ko.xz' -exec unxz {} +
	find "$tmp/stage" -name '*.ko.zst' -exec zstd -q -d --rm {} +
	depmod -b "$tmp/stage/usr" "$kver"
	(cd "$tmp/stage" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --quiet) | gzip -n >"$tmp/modules.cpio.gz"
	cp "$tmp/root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
	echo "$kver" >"$tmp/kernel-version"
	rm -rf "$tmp/root" "$tmp/stage" "$tmp"/*.deb
	rm -rf "$dest"
	mv "$tmp" "$dest"
}

pkg="$(resolve_package)"
pkg_version="$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)"
[[ -n "$pkg_version" ]] || die "$pkg has no installable version"
kernel_dir="$build_dir/kernels/${pkg}_$pkg_version"
[[ -f "$kernel_dir/vmlinuz" ]] || fetch_kernel "$kernel_dir"
echo "vm.sh: kernel $pkg $pkg_version ($(cat "$kernel_dir/kernel-version"))"

run_dir="$build_dir/$series"
root="$run_dir/root"
rm -rf "$root"
mkdir -p "$root"/{dev,proc,sys,tmp,run,root,etc,vmtest} "$root"/usr/{bin,sbin,lib,lib64}
for dir in bin sbin lib lib64; do
	ln -s "usr/$dir" "$root/$dir"
done
chmod 1777 "$root/tmp"

# The guest mirrors the host's merged /usr: a host path is stored under its directory's real
# path (/lib/x86_64-linux-gnu/libc.so.6 -> /usr/lib/x86_64-linux-gnu/libc.so.6), so no archive
# entry ever replaces the bin, sbin, lib, lib64 symlinks.
guest_path() {
	echo "$(realpath "$(dirname "$1")")/$(basename "$1")"
}

declare -A copied=()

# Copies the ELF file's shared libraries and dynamic loader, as ldd lists them.
copy_libs() {
	local lib
	while read -r lib; do
		copy_file "$lib"
	done < <(ldd "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }')
}

# Copies one host file (following symlinks) to the same path in the guest, with its libraries.
copy_file() {
	local dest
	dest="$(guest_path "$1")"
	[[ -z "${copied[$dest]:-}" ]] || return 0
	copied[$dest]=1
	mkdir -p "$root$(dirname "$dest")"
	cp -L --preserve=mode "$1" "$root$dest"
	if [[ "$(head -c 4 "$1")" == $'\177ELF' ]]; then
		copy_libs "$1"
	fi
}

copy_path() {
	local file
	[[ -e "$1" ]] || die "no such file: $1"
	if [[ -d "$1" ]]; then
		while IFS= read -r -d '' file; do
			copy_file "$file"
		done < <(find "$1" -xtype f -print0)
	else
		copy_file "$1"
	fi
}

copy_file "$busybox_bin"
while read -r applet; do
	[[ "$applet" == */* ]] || continue # "linuxrc" belongs to initrd boots only
	[[ -e "$root/$applet" ]] || ln -s /usr/bin/busybox "$root/$applet"
done < <("$busybox_bin" --list-full)

for path in "${host_paths[@]}"; do
	copy_path "$path"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
EOF
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$root/etc/nsswitch.conf"

# Quotes each argument for sh, so that COMMAND reaches the guest exactly as given.
sh_quote() {
	local arg sep=""
	for arg in "$@"; do
		printf "%s'%s'" "$sep" "${arg//\'/\'\\\'\'}"
		sep=" "
	done
}

guest_cwd="$(pwd -P)"
mkdir -p "$root$guest_cwd"
{
	echo "export VMTEST_KERNEL=$(sh_quote "$series")"
	for var in "${guest_env[@]}"; do
		[[ "$var" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "-e wants NAME=VALUE, got '$var'"
		echo "export ${var%%=*}=$(sh_quote "${var#*=}")"
	done
	echo "cd $(sh_quote "$guest_cwd") || exit $EXIT_HARNESS"
	sh_quote "$@"
	echo
} >"$root/vmtest/cmd.sh"

cat >"$root/init" <<'EOF'
#!/bin/sh
# /init of the vm.sh guest. PID 1 starts with no open files: take the console first.
export PATH=/usr/sbin:/usr/bin HOME=/root
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
echo "vmtest: /init at uptime $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r)"
echo "vmtest: init started" >/dev/kmsg

ip link set lo up
# Do what udev's coldplug does on a real host: load the drivers whose "cpu:" alias matches this
# CPU (aesni_intel, ghash_clmulni_intel), else kTLS gets the generic C crypto. busybox modprobe
# cannot match a modalias, so match it here with sh's glob.
cpu_modalias=$(cat /sys/devices/system/cpu/modalias)
grep '^alias cpu:' "/lib/modules/$(uname -r)/modules.alias" | while read -r _ pattern module; do
	case "$cpu_modalias" in $pattern) modprobe "$module" ;; esac
done
if modprobe tls; then
	echo "vmtest: modprobe tls: ok"
else
	echo "vmtest: modprobe tls FAILED: kTLS is not available in this guest"
fi

sh /vmtest/cmd.sh </dev/null
rc=$?

echo "vmtest: /proc/net/tls_stat:"
cat /proc/net/tls_stat
if [ "$rc" -ne 0 ]; then
	echo "vmtest: kernel messages since /init started:"
	dmesg | sed '1,/vmtest: init started/d' | tail -n 60
fi
echo "VMTEST-EXIT=$rc"
poweroff -f
EOF
chmod 755 "$root/init"

initrd="$run_dir/initrd.img"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -n -1 >"$run_dir/payload.cpio.gz"
# The kernel unpacks concatenated archives in order: the cached modules, then this run's files.
cat "$kernel_dir/modules.cpio.gz" "$run_dir/payload.cpio.gz" >"$initrd"

# Streams the console to stdout and the log (without the serial line's CRs) and reports how long
# the kernel took to reach /init, by the host's clock.
log="$run_dir/console.log"
stream_console() {
	local line booted=""
	while IFS= read -r line || [[ -n "$line" ]]; do
		line="${line%$'\r'}"
		printf '%s\n' "$line"
		printf '%s\n' "$line" >&3
		if [[ -z "$booted" && "$line" == *"vmtest: /init at uptime"* ]]; then
			booted=1
			echo "vm.sh: /init reached $(elapsed) s after QEMU started"
		fi
	done
}

# Seconds since start_us, with one decimal.
elapsed() {
	local us=$((${EPOCHREALTIME/./} - start_us))
	printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
}

# -cpu max gives the guest TCG's AES-NI, PCLMULQDQ, SSSE3 and AVX2, so the accelerated crypto
# drivers load. qboot is a quiet, fast firmware for direct kernel boots (SeaBIOS would print
# escape codes that reset the terminal). No NIC: the guest only talks to itself over loopback.
start_us="${EPOCHREALTIME/./}"
status=0
exec 3>"$log"
timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -m "$mem_mib" -smp 1 \
	-nographic -no-reboot -nic none -bios qboot.rom \
	-kernel "$kernel_dir/vmlinuz" -initrd "$initrd" \
	-append "console=ttyS0 panic=-1 quiet" </dev/null 2>&1 |
	stream_console || status=$?
exec 3>&-
echo "vm.sh: QEMU ran $(elapsed) s in total"

if [[ $status -eq $EXIT_TIMEOUT ]]; then
	echo "vm.sh: FAIL: timed out after $timeout_s s (console in $log)" >&2
	exit "$EXIT_TIMEOUT"
fi
exit_line="$(grep -a '^VMTEST-EXIT=[0-9]*$' "$log" | tail -n1)" ||
	die "FAIL: no VMTEST-EXIT line on the console (QEMU status $status, console in $log)"
exit "${exit_line#VMTEST-EXIT=}"
