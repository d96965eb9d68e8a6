#!/bin/sh
# Runs the unit/parity test binary, then every CLI test script in tests/cli/,
# and prints one closing line "N passed, N failed".
BUILD=${1:-build}
OPTVQ_BIN=${OPTVQ_BIN:-$BUILD/optvq}
export OPTVQ_BIN
out=$(mktemp)
"$BUILD/run_tests" 2>&1 | tee "$out"
unit_pass=$(sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$out")
unit_fail=$(sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$out")
[ -n "$unit_pass" ] || { unit_pass=0; unit_fail=1; echo "run_tests did not finish"; }
rm -f "$out"
cli_pass=0; cli_fail=0
# under AddressSanitizer: every command that draws text (train's curves.png,
# toy, demo) meets fontconfig's leaks, which are not ours
LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    if sh "$t" >"/tmp/optvq-cli-$$.log" 2>&1; then
        echo "[  OK  ] $t"; cli_pass=$((cli_pass + 1))
    else
        echo "[ FAIL ] $t"; sed 's/^/    /' "/tmp/optvq-cli-$$.log"; cli_fail=$((cli_fail + 1))
    fi
    rm -f "/tmp/optvq-cli-$$.log"
done
passed=$((unit_pass + cli_pass)); failed=$((unit_fail + cli_fail))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
