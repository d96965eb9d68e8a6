#!/bin/sh
# optvq demo (the main job) end to end on its tiny --quick setting: the toy,
# both Fashion-MNIST models, the report and its pictures; a bad option fails.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# Under AddressSanitizer (make check-asan): fontconfig, which cairo's text
# uses for the toy and the charts, leaks parts of its configuration; not ours.
printf 'leak:libfontconfig.so\n' >"$tmp/lsan.supp"
LSAN_OPTIONS="suppressions=$tmp/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
"$BIN" demo --quick --out "$tmp/d" --threads 2 >"$tmp/log" 2>&1 || fail "demo --quick: $(tail -3 "$tmp/log")"
for f in toy.gif toy.png usage.png psnr.png reconstructions.png report.md optvq/model.safetensors vqbase/model.safetensors; do
    [ -s "$tmp/d/$f" ] || fail "missing $f"
done
grep -q "OptVQ" "$tmp/d/report.md" || fail "report names no OptVQ row"
grep -qi "vanilla" "$tmp/d/report.md" || fail "report names no baseline row"
"$BIN" info --model "$tmp/d/optvq" | grep -q "1024 codes" || fail "the demo's OptVQ model does not load"
# the demo trains what the shipped configs say, codebook start included
for m in optvq vqbase; do
    ours=$(sed -n 's/^ *use_initiate: *\([a-z_]*\).*/\1/p' "$tmp/d/$m.yaml")
    shipped=$(sed -n 's/^ *use_initiate: *\([a-z_]*\).*/\1/p' "configs/fashion-mnist/$m.yaml")
    [ -n "$ours" ] && [ "$ours" = "$shipped" ] ||
        fail "$m: the demo starts its codebook from '$ours', configs/fashion-mnist/$m.yaml from '$shipped'"
done
"$BIN" demo --epochs -1 --out "$tmp/e" >"$tmp/err" 2>&1; [ $? -eq 2 ] || fail "a bad option should exit 2"
echo "demo ok"
