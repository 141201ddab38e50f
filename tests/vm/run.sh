#!/usr/bin/env bash
# run.sh: the kTLS VM suite (make vmtest). Builds the guest programs, then boots each Debian
# kernel with tests/vm/vm.sh and runs every tests/vm/guest/*.sh in it (through suite.sh).
#
# Usage: tests/vm/run.sh [-b BUILD_DIR] [-t SECONDS] [KERNEL...]
#   -b  build directory for the guest programs and vm.sh's kernel cache
#       (default $KTLSD_BUILD/vm, KTLSD_BUILD being the daemon's build directory, default build)
#   -t  timeout per kernel in seconds (default 900)
#   KERNEL  6.1 and/or 6.12 (default: both, in that order)
#
# To add a test, drop an executable tests/vm/guest/NN-name.sh: it runs in the guest from the
# repository root with VMTEST_BUILD, KTLSD_BUILD (absolute paths) and VMTEST_KERNEL set, prints
# its own results and exits 0 (pass), 77 (skip) or anything else (fail). Host files it needs are
# named on "# vm-files:" lines, relative to the repository root; $VMTEST_BUILD and $KTLSD_BUILD
# may appear in them. ELF files bring their shared libraries.
#
# Ends with "vmtest: N passed, N failed, N skipped", counting (kernel, script) pairs. Exit
# status: 1 if anything failed, 77 if nothing ran (no QEMU), else 0.
set -euo pipefail

cd "$(dirname "$0")/../.."

# Prints the usage lines of the header and exits with $1.
usage() {
	sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit "$1"
}

ktlsd_build="${KTLSD_BUILD:-build}"
build_dir="$ktlsd_build/vm"
timeout_s=900
while getopts "b:t:h" opt; do
	case "$opt" in
	b) build_dir="$OPTARG" ;;
	t) timeout_s="$OPTARG" ;;
	h) usage 0 ;;
	*) usage 2 ;;
	esac
done
shift $((OPTIND - 1))
kernels=("$@")
[[ ${#kernels[@]} -gt 0 ]] || kernels=(6.1 6.12)

mkdir -p "$build_dir"
build_dir="$(realpath "$build_dir")"
ktlsd_build="$(realpath -m "$ktlsd_build")"

echo "run.sh: building $build_dir/ktls_probe"
"${CC:-cc}" -O2 -Wall -Wextra -Werror -o "$build_dir/ktls_probe" tests/vm/ktls_probe.c
echo "run.sh: building $build_dir/gnutls_client"
"${CC:-cc}" -O2 -Wall -Wextra -Werror -o "$build_dir/gnutls_client" tests/vm/gnutls_client.c -lgnutls

files=(-f tests/vm/suite.sh -f tests/vm/guest)
# shellcheck disable=SC2016 # the vm-files lines hold the literal names, replaced here
while read -r path; do
	path="${path//'$VMTEST_BUILD'/$build_dir}"
	files+=(-f "${path//'$KTLSD_BUILD'/$ktlsd_build}")
done < <(sed -n 's/^# vm-files://p' tests/vm/guest/*.sh | tr -s ' \t' '\n' | sed '/^$/d')

# The kernels boot in parallel, one QEMU (one vCPU) per host core; each one's console goes to
# its own file and is printed whole when it is done.
pids=()
for kernel in "${kernels[@]}"; do
	tests/vm/vm.sh -k "$kernel" -b "$build_dir" -t "$timeout_s" -e "VMTEST_BUILD=$build_dir" \
		-e "KTLSD_BUILD=$ktlsd_build" -e "VMTEST_MIB=${VMTEST_MIB:-64}" \
		-e "VMTEST_ONLY=${VMTEST_ONLY:-}" "${files[@]}" -- sh tests/vm/suite.sh \
		>"$build_dir/run-$kernel.out" 2>&1 &
	pids+=($!)
done

passed=0 failed=0 skipped=0
for i in "${!kernels[@]}"; do
	kernel="${kernels[$i]}"
	status=0
	wait "${pids[$i]}" || status=$?
	echo "run.sh: ===== kernel $kernel"
	cat "$build_dir/run-$kernel.out"
	if [[ $status -eq 77 ]]; then
		skipped=$((skipped + 1))
		continue
	fi
	results="$(grep -a '^VMTEST-RESULT ' "$build_dir/$kernel/console.log" || true)"
	passed=$((passed + $(grep -c ' PASS$' <<<"$results" || true)))
	failed=$((failed + $(grep -c ' FAIL$' <<<"$results" || true)))
	skipped=$((skipped + $(grep -c ' SKIP$' <<<"$results" || true)))
	if [[ $status -ne 0 ]] && ! grep -q ' FAIL$' <<<"$results"; then
		echo "run.sh: kernel $kernel: the VM run failed (status $status)"
		failed=$((failed + 1))
	fi
done

# The failures again, last: a log cut to its tail (CI's) still names them.
if [[ $failed -gt 0 ]]; then
	echo "vmtest: what failed:"
	for kernel in "${kernels[@]}"; do
		grep -a -w FAIL "$build_dir/run-$kernel.out" |
			sed "s/^/  $kernel: /" || true
	done
fi
echo "vmtest: $passed passed, $failed failed, $skipped skipped"
if [[ $failed -gt 0 ]]; then
	exit 1
elif [[ $passed -eq 0 ]]; then
	exit 77
fi
