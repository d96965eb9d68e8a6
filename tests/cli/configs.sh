#!/bin/sh
# Every shipped config parses and builds its model (optvq info on random weights
# via a converted random checkpoint is too slow for the f16 ones, so the check
# is `optvq train` refusing the ImageNet configs without LPIPS weights and
# the Fashion-MNIST configs building).
set -u
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for c in configs/fashion-mnist/optvq.yaml configs/fashion-mnist/vqbase.yaml; do
    "$BIN" train --config "$c" --out "$tmp/r" --epochs 0 --limit 64 --val-limit 0 >/dev/null 2>"$tmp/err" \
        || fail "$c: $(cat "$tmp/err")"
    "$BIN" info --model "$tmp/r" | grep -q "1024 codes" || fail "$c: info"
    rm -rf "$tmp/r"
done
for c in configs/imagenet/optvq_256_f16_h4.yaml configs/imagenet/optvq_256_f16_h8.yaml; do
    "$BIN" train --config "$c" --out "$tmp/r" --data tests/ref/image >/dev/null 2>"$tmp/err"
    [ $? -eq 1 ] || fail "$c: training an ImageNet config should be refused"
    grep -q "LPIPS" "$tmp/err" || fail "$c: $(cat "$tmp/err")"
done
echo "configs ok"
