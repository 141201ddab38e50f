#!/usr/bin/env bash
# fresh-clone.sh: what a newcomer's first command meets in a fresh clone under /tmp (the first
# stage of make test; a few seconds, builds and boots nothing).
#
# Copies the tree as a clone of it would be (the files git tracks or does not ignore, as they
# are in the work tree; no build/) into a new directory under /tmp, then checks there:
#   1. for every target `make help` lists, that `make -n TARGET` (run as the first command)
#      makes what the target uses, e.g. the fixtures before make vmtest boots its guests;
#   2. that the QEMU guest's /init (tests/vm/vm.sh) mounts nothing over that /tmp directory, and
#      that vm.sh refuses a path under each of the mount points it does have.
# make -n runs the recipes that call $(MAKE), as make test's does, and the Makefile then only
# prints its VM stage and this script's stage; make -n test here also sets VMTEST and
# FRESH_CLONE_CHECK to an echo, so that even a Makefile that ran them would not boot or recurse.
#
# Usage: tests/fresh-clone.sh. Exit status: 0 if every check passed, else 1.
set -euo pipefail

top="$(cd "$(dirname "$0")/.." && pwd -P)"
dst="$(mktemp -d /tmp/ktlsd-fresh-clone.XXXXXX)"
trap 'rm -rf "$dst"' EXIT
failed=0 checked=0

fail() {
	echo "fresh-clone: FAIL: $*"
	failed=$((failed + 1))
}

if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$top" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do if [[ -e "$top/$f" ]]; then printf '%s\0' "$f"; fi; done |
		tar -C "$top" --null -T - -cf - | tar -C "$dst" -xf -
else
	tar -C "$top" --exclude=./build -cf - . | tar -C "$dst" -xf -
fi
[[ ! -e "$dst/build" ]] || fail "the copy has a build/ directory: git must ignore it"

# make in the copy as a first command: nothing inherited from a make that runs this script.
fresh_make() {
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES -u MAKE -u B \
		make -C "$dst" --no-print-directory "$@" 2>&1
}

# What the commands that make -n prints must show (extended regular expressions).
need_deps_check='sh tools/deps.sh check$'
need_ktlsd='-o build/ktlsd$'
need_ktlsctl='-o build/ktlsctl$'
need_fixtures='sh tests/fixtures/gen.sh build/fixtures$'
need_unit='-lcmocka -o build/tests/test_'
need_san_ktlsd='-o build/san/ktlsd$'
need_san_fixtures='sh tests/fixtures/gen.sh build/san/fixtures$'
need_san_unit='-lcmocka -o build/san/tests/test_'
# The ASan tree compiles against its own BPF skeleton, not one a plain make left in build/bpf.
need_san_skel='-Ibuild/san/bpf .*-c user/bpfmap\.c -o build/san/user/bpfmap\.o$'
need_lint=('sh tools/lint/format\.sh ' 'python3 tools/lint/includes\.py ' 'python3 tools/lint/selftest\.py ')

# expect TARGET LABEL TEXT REGEX...: each REGEX matches a line of TEXT (make -n TARGET's output).
expect() {
	local target="$1" label="$2" text="$3" re
	shift 3
	for re in "$@"; do
		checked=$((checked + 1))
		grep -Eq -e "$re" <<<"$text" ||
			fail "make $target ($label): no line of make -n $target matches /$re/"
	done
}

# Every target make help lists, or the check fails until this list knows it.
mapfile -t targets < <(fresh_make help |
	sed -n 's/^make \([a-z-]\{1,\}\) .*/\1/p; s/^make  .*/all/p')
[[ ${#targets[@]} -ge 10 ]] || fail "make help lists ${#targets[@]} targets: ${targets[*]}"

for target in "${targets[@]}"; do
	case "$target" in
	test)
		out="$(fresh_make -n test VMTEST='echo vmtest-ran' FRESH_CLONE_CHECK='echo fresh-ran')"
		;;
	*) out="$(fresh_make -n "$target")" ;;
	esac || fail "make -n $target exited with $?: $(tail -n 3 <<<"$out")"
	case "$target" in
	all) expect all build "$out" "$need_ktlsd" "$need_ktlsctl" ;;
	deps) expect deps packages "$out" 'sh tools/deps.sh install$' ;;
	run) expect run demo "$out" "$need_deps_check" "$need_ktlsd" 'sh tools/demo.sh build$' ;;
	test)
		# The VM stage runs inline on test's own prerequisites: the lines before the first stage.
		expect test prerequisites "$(sed '/^== /,$d' <<<"$out")" "$need_deps_check" \
			"$need_ktlsd" "$need_ktlsctl" "$need_unit" "$need_fixtures"
		expect test stages "$out" "$need_san_ktlsd" "$need_san_fixtures" "$need_san_unit" \
			"$need_san_skel" "${need_lint[@]}" \
			'^(VMTEST_MIB=[0-9]+ )?echo vmtest-ran$' '^echo fresh-ran$' 'build/fuzz/fuzz_config$'
		! grep -Eq '^(vmtest|fresh)-ran$' <<<"$out" ||
			fail "make -n test ran its VM stage or this script instead of printing them"
		;;
	unit) expect unit cmocka "$out" "$need_deps_check" "$need_unit" "$need_fixtures" ;;
	integration | valgrind | valgrind-ci)
		expect "$target" pytest "$out" "$need_deps_check" "$need_ktlsd" "$need_ktlsctl" \
			"$need_fixtures" 'python3 -m pytest'
		;;
	vmtest)
		expect vmtest QEMU "$out" "$need_deps_check" "$need_ktlsd" "$need_fixtures" \
			'bash tests/vm/run.sh'
		;;
	lint) expect lint "format and includes" "$out" "$need_deps_check" "${need_lint[@]}" ;;
	lint-selftest) expect lint-selftest plants "$out" 'python3 tools/lint/selftest\.py$' ;;
	coverage)
		expect coverage gcov "$out" "$need_deps_check" '-lcmocka -o build/cov/tests/test_' \
			'sh tests/fixtures/gen.sh build/cov/fixtures$' '--coverage' \
			"python3 tools/coverage.py --build build/cov --min [0-9.]+ user/conn\.c "
		;;
	check) expect check ASan "$out" "$need_deps_check" "$need_san_ktlsd" "$need_san_fixtures" \
			"$need_san_unit" "$need_san_skel" 'python3 -m pytest'
		;;
	fuzz)
		for f in "$dst"/tests/fuzz/fuzz_*.c; do
			f="${f##*/}"
			expect fuzz libFuzzer "$out" "-o build/fuzz/${f%.c}$"
		done
		expect fuzz libFuzzer "$out" "$need_deps_check"
		;;
	bench)
		expect bench peers "$out" "$need_deps_check" "$need_ktlsd" "$need_ktlsctl" \
			'-o build/bench/tlsload$' '-o build/bench/sinkd$' 'sh bench/deps.sh$'
		;;
	install) expect install DESTDIR "$out" "$need_ktlsd" 'install .* build/ktlsd ' ;;
	*) fail "make help lists '$target', which this script does not know: add what it needs" ;;
	esac
done

# The guest's /init: the heredoc vm.sh writes to $root/init. Its mount targets are the last word
# of its mount lines.
# shellcheck disable=SC2016 # $root is vm.sh's text, not this script's variable
init="$(sed -n '/^cat >"$root\/init" <</,/^EOF$/p' "$dst/tests/vm/vm.sh")"
mapfile -t mounts < <(awk '$1 == "mount" { print $NF }' <<<"$init")
[[ ${#mounts[@]} -gt 0 ]] || fail "no mount line in the guest /init of tests/vm/vm.sh"
for mnt in "${mounts[@]}"; do
	for path in "$dst" "$dst/build/vm" "$top"; do
		checked=$((checked + 1))
		[[ "$path" != "$mnt" && "$path" != "$mnt"/* ]] ||
			fail "the guest /init mounts $mnt over $path: a tree there is hidden in the guest"
	done
	# vm.sh must refuse a path under it first thing; with the unknown kernel series "none" it
	# stops at once otherwise, so this never downloads a kernel or boots.
	checked=$((checked + 1))
	msg="$(cd "$dst" && timeout 20 tests/vm/vm.sh -k none -b "$dst/build/vm" \
		-f "$mnt/fresh-clone-check" -- true 2>&1)" && rc=0 || rc=$?
	[[ $rc -eq 125 && "$msg" == *"mounts over"* ]] ||
		fail "vm.sh -f $mnt/fresh-clone-check: exit $rc, want 125 and 'mounts over': $msg"
done

if [[ $failed -gt 0 ]]; then
	echo "fresh-clone: $failed of $checked checks failed"
	exit 1
fi
echo "fresh-clone: all $checked checks ok (${#targets[@]} make targets, guest mounts ${mounts[*]})"
