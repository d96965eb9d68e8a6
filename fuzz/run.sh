#!/bin/sh
# Runs every libFuzzer target for SECONDS seconds each (make fuzz):
#   fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
# The seeds in fuzz/corpus/<target>/ are read, never written; new inputs go
# to BUILD_DIR/corpus/<target>/. Any crash, leak, timeout (-timeout=10) or
# out-of-memory (-rss_limit_mb=2048) is a failure: the input is saved under
# BUILD_DIR/artifacts/<target>/ (copy it to fuzz/regressions/<target>/).
# Prints one line per target (executions, seconds, corpus) and appends it to
# BUILD_DIR/fuzz-stats.txt.
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
shift 2 2>/dev/null
TARGETS=${*:-"npy safetensors pth config idx png jpeg"}

max_len() {
    case $1 in
    npy | idx | config) echo 4096 ;;
    safetensors) echo 8192 ;;
    *) echo 16384 ;;
    esac
}

failed=0
for t in $TARGETS; do
    bin=$BUILD/fuzz_$t
    [ -x "$bin" ] || { echo "fuzz: $bin is not built"; failed=1; continue; }
    mkdir -p "$BUILD/corpus/$t" "$BUILD/artifacts/$t"
    log=$BUILD/fuzz_$t.log
    dict=
    [ -f "fuzz/dict/$t.dict" ] && dict="-dict=fuzz/dict/$t.dict"
    before=$(ls "$BUILD/artifacts/$t" | wc -l)
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
        "$bin" -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t/" $dict \
        "$BUILD/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    after=$(ls "$BUILD/artifacts/$t" | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}')
    corpus=$(ls "$BUILD/corpus/$t" | wc -l)
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        status=FAIL
        failed=1
    else
        status=ok
    fi
    line=$(printf '%-12s %-4s %12s execs %6s s  corpus %s' "$t" "$status" "${execs:-?}" "${secs:-?}" "$corpus")
    echo "$line"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $line" >>"$BUILD/fuzz-stats.txt"
    if [ "$status" = FAIL ]; then
        grep -E 'ERROR|SUMMARY|runtime error|fuzz:' "$log" | head -5 | sed 's/^/    /'
        echo "    log: $log; inputs: $BUILD/artifacts/$t/"
    fi
done
exit $failed
