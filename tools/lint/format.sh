#!/bin/sh
# format.sh — clang-format over every C source and header of the tree (make lint; make format).
#   format.sh [DIR]      check: clang-format --dry-run -Werror; lists the files that differ
#   format.sh -i [DIR]   reformat them in place
# The files are those git tracks (git ls-files '*.c' '*.h'); in a tree that is not a git work
# tree (a tarball) every *.c and *.h under DIR but build/. Generated or vendored files are left
# out by the patterns in EXCLUDE (none today: what the build generates is under build/, which
# git ignores). CLANG_FORMAT names the binary (default clang-format; the tree is formatted with
# Debian 12's clang-format 14, whose output other versions do not always match).
set -u
fix=0
if [ "${1:-}" = -i ]; then
	fix=1
	shift
fi
cd "${1:-$(dirname "$0")/../..}" || exit 2
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if [ ! -f .clang-format ]; then
	echo "format: $(pwd -P)/.clang-format is missing (clang-format would use its own style)" >&2
	exit 2
fi
EXCLUDE='^build/'

if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
	echo "format: $CLANG_FORMAT is not installed (Debian: apt-get install clang-format)" >&2
	exit 2
fi
case "$("$CLANG_FORMAT" --version)" in
*" version 14."*) ;;
*) echo "format: warning: $("$CLANG_FORMAT" --version) is not clang-format 14; it may disagree" ;;
esac

list=$(mktemp) && out=$(mktemp) || exit 2
trap 'rm -f "$list" "$out"' EXIT
from='find (no git work tree)'
[ "$(git rev-parse --show-toplevel 2>/dev/null)" != "$(pwd -P)" ] || from='git ls-files'
if [ "$from" = 'git ls-files' ]; then
	git ls-files '*.c' '*.h'
else
	find . -name build -prune -o -name .git -prune -o -type f \( -name '*.c' -o -name '*.h' \) \
		-print | sed 's|^\./||' | LC_ALL=C sort
fi | grep -Ev "$EXCLUDE" | while IFS= read -r f; do
	[ -f "$f" ] && printf '%s\n' "$f" # a tracked file deleted in the work tree is no longer C
done >"$list"
n=$(wc -l <"$list")

if [ "$fix" = 1 ]; then
	tr '\n' '\0' <"$list" | xargs -0 "$CLANG_FORMAT" -i
	exit
fi
tr '\n' '\0' <"$list" | xargs -0 "$CLANG_FORMAT" --dry-run -Werror >"$out" 2>&1
rc=$?
if [ $rc = 0 ]; then
	echo "format: all $n files ($from) are as clang-format writes them"
	exit 0
fi
bad=$(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' "$out" |
	uniq | sort -u)
if [ -z "$bad" ]; then
	echo "format: $CLANG_FORMAT failed (exit $rc):"
	cat "$out"
	exit 1
fi
echo "format: $(printf '%s\n' "$bad" | wc -l) of $n files ($from) differ from what clang-format writes:"
printf '  %s\n' $bad
echo "format: see the changes with $CLANG_FORMAT --dry-run FILE; make format rewrites them"
exit 1
