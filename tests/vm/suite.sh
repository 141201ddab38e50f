#!/bin/sh
# Runs in the vm.sh guest (started by tests/vm/run.sh): every tests/vm/guest/*.sh in name order,
# each printing its own results, then one "VMTEST-RESULT <kernel> <script> PASS|FAIL|SKIP" line
# per script for run.sh to count. A script passes with exit 0 and is skipped with exit 77.
# Exit status: 1 if any script failed, else 0.
failed=0
for script in tests/vm/guest/*.sh; do
	echo "=== $script"
	"$script"
	rc=$?
	case $rc in
	0) result=PASS ;;
	77) result=SKIP ;;
	*) result=FAIL failed=1 ;;
	esac
	echo "=== $script: exit $rc"
	echo "VMTEST-RESULT $VMTEST_KERNEL $script $result"
done
exit $failed
