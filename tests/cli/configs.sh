#!/bin/sh
# Every shipped config works with every command:
# - `optvq info --config X --init-random 1` for each file in configs/ (the
#   f32 one reports downsampling 32 and an 8 x 8 x 8 token grid);
# - encode, decode, reconstruct and eval on random weights (--init-random),
#   which are deterministic for a seed, and the f32 architecture end to end;
# - --init-random's usage errors;
# - `optvq train`: the MNIST, CIFAR-10 and Fashion-MNIST configs train a step
#   or two; the ImageNet ones are refused without LPIPS weights; and
#   the f32 h8 config, shrunk (fewer channels and codes, 64x64 images), trains
#   an epoch with its discriminator.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

n=0
for c in configs/*/*.yaml; do
    "$BIN" info --config "$c" --init-random 1 >"$tmp/info" 2>"$tmp/err" || fail "$c: info: $(cat "$tmp/err")"
    grep -q "^parameters" "$tmp/info" || fail "$c: info prints no parameter count"
    n=$((n + 1))
done
[ "$n" -ge 13 ] || fail "only $n configs in configs/"
"$BIN" info --config configs/imagenet/optvq_256_f32_h8.yaml --init-random 1 >"$tmp/info"
grep -q "downsampling 32" "$tmp/info" || fail "f32: $(cat "$tmp/info")"
grep -q "8 x 8 x 8 heads = 512 per image" "$tmp/info" || fail "f32 tokens: $(cat "$tmp/info")"

# random weights, end to end (x.npy: 2 RGB and 3 grey 32x32 images in [-1, 1])
rgb=tests/ref/model/plain_vqbase/x.npy grey=tests/ref/model/plain/x.npy
M="--config configs/cifar10/optvq.yaml --init-random 7"
"$BIN" encode $M --input $rgb --out "$tmp/t.npy" >/dev/null 2>"$tmp/err" || fail "encode: $(cat "$tmp/err")"
"$BIN" decode $M --input "$tmp/t.npy" --out "$tmp/d.npy" >/dev/null 2>"$tmp/err" || fail "decode: $(cat "$tmp/err")"
"$BIN" reconstruct $M --input $rgb --out "$tmp/r.npy" --save-indices "$tmp/t2.npy" >/dev/null 2>"$tmp/err" ||
    fail "reconstruct: $(cat "$tmp/err")"
cmp -s "$tmp/t.npy" "$tmp/t2.npy" || fail "encode and reconstruct give different tokens"
cmp -s "$tmp/d.npy" "$tmp/r.npy" || fail "decode(encode(x)) != reconstruct(x)"
"$BIN" encode $M --input $rgb --out "$tmp/t3.npy" >/dev/null 2>&1 || fail "encode again"
cmp -s "$tmp/t.npy" "$tmp/t3.npy" || fail "the same seed gave other weights"
"$BIN" reconstruct --config configs/cifar10/optvq.yaml --init-random 8 --input $rgb --out "$tmp/r8.npy" \
    >/dev/null 2>&1 || fail "reconstruct, seed 8"
cmp -s "$tmp/r.npy" "$tmp/r8.npy" && fail "seeds 7 and 8 gave the same model"
"$BIN" reconstruct --config configs/mnist/vqbase.yaml --init-random 1 --input $grey --out "$tmp/g.npy" \
    >/dev/null 2>"$tmp/err" || fail "mnist reconstruct: $(cat "$tmp/err")"
"$BIN" eval --config configs/mnist/optvq.yaml --init-random 1 --data $grey --json "$tmp/e.json" >/dev/null \
    2>"$tmp/err" || fail "eval: $(cat "$tmp/err")"
grep -q '"psnr"' "$tmp/e.json" || fail "eval json: $(cat "$tmp/e.json")"
# the f32 taming model (100M parameters) on 32x32 images: a 1x1 token grid per head
"$BIN" reconstruct --config configs/imagenet/optvq_256_f32_h8.yaml --init-random 1 --input $rgb \
    --out "$tmp/f32.npy" --save-indices "$tmp/f32t.npy" >/dev/null 2>"$tmp/err" || fail "f32: $(cat "$tmp/err")"
head -c 128 "$tmp/f32t.npy" | grep -q "(2, 8, 1, 1)" || fail "f32 tokens: $(head -c 128 "$tmp/f32t.npy")"

# usage: --init-random needs --config and excludes --weights and --model
usage() {
    "$BIN" "$@" >/dev/null 2>"$tmp/err"
    [ $? -eq 2 ] || fail "$*: exit 2 expected"
}
usage info --config configs/mnist/optvq.yaml --init-random 1 --weights "$tmp/w.safetensors"
usage info --model "$tmp" --init-random 1
usage info --init-random 1
usage eval --config configs/mnist/optvq.yaml --init-random 1 --weights "$tmp/w.safetensors" --data $grey
usage info --config configs/mnist/optvq.yaml --init-random x
usage info --config configs/mnist/optvq.yaml --init-random -1
grep -q "init-random" "$tmp/err" || fail "message: $(cat "$tmp/err")"
"$BIN" info --help | grep -q "init-random SEED" || fail "info --help does not list --init-random"

# train
mkdir "$tmp/imgs"
for f in camera_crop.png chelsea_crop.png coffee_crop.jpg rand0.png rand1.png rand2.png rand3.png rand4.png rand5.png; do
    cp "tests/ref/image/$f" "$tmp/imgs/"
done
fm=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
for c in configs/fashion-mnist/*.yaml configs/mnist/*.yaml configs/cifar10/*.yaml; do
    case $c in
    *fashion-mnist*) data="" ;;
    *mnist*) data="--data $fm" ;; # any IDX file stands in for MNIST's
    *) data="--data $tmp/imgs" ;;
    esac
    "$BIN" train --config "$c" $data --out "$tmp/r" --epochs 1 --limit 16 --batch-size 8 --val-limit 0 \
        >/dev/null 2>"$tmp/err" || fail "$c: $(cat "$tmp/err")"
    grep -q '"lr"' "$tmp/r/metrics.jsonl" || fail "$c: no training step in metrics.jsonl"
    "$BIN" info --model "$tmp/r" | grep -q "1024 codes" || fail "$c: info"
    rm -rf "$tmp/r"
done
"$BIN" train --config configs/cifar10/optvq.yaml --out "$tmp/r" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "cifar10 without --data should fail"
grep -q "give --data" "$tmp/err" || fail "message: $(cat "$tmp/err")"
for c in configs/imagenet/*.yaml; do
    "$BIN" train --config "$c" --out "$tmp/r" --data "$tmp/imgs" >/dev/null 2>"$tmp/err"
    [ $? -eq 1 ] || fail "$c: training an ImageNet config should be refused"
    grep -q "LPIPS" "$tmp/err" || fail "$c: $(cat "$tmp/err")"
done
# the f32 h8 config shrunk: 6 levels, attention at the lowest (2x2 at 64x64),
# 8 heads, AELossWithDisc without LPIPS, the discriminator from step 1
sed -e 's/ch: 128/ch: 32/' -e 's/z_channels: 256/z_channels: 64/' -e 's/e_dim: 256/e_dim: 64/' \
    -e 's/n_e: 16384/n_e: 256/' -e 's/resolution: 256/resolution: 64/' -e 's/resize: 256/resize: 64/' \
    -e 's/attn_resolutions: \[8\]/attn_resolutions: [2]/' -e 's/loss_p_weight: 3.0/loss_p_weight: 0.0/' \
    -e 's/disc_start: 150000/disc_start: 1/' -e 's/use_initiate: kmeans/use_initiate: random/' \
    configs/imagenet/optvq_256_f32_h8.yaml >"$tmp/f32.yaml"
[ "$(grep -c -e 'ch: 32' -e 'attn_resolutions: \[2\]' -e 'resolution: 64' "$tmp/f32.yaml")" -eq 6 ] ||
    fail "the f32 config changed; update the shrinking"
"$BIN" train --config "$tmp/f32.yaml" --data "$tmp/imgs" --val-data "$tmp/imgs" --epochs 1 --batch-size 3 \
    --threads 2 --out "$tmp/f32run" >"$tmp/log" 2>&1 || fail "f32 training: $(tail -3 "$tmp/log")"
grep -q '"g_weight"' "$tmp/f32run/metrics.jsonl" || fail "f32: no generator terms"
grep -q 'nan' "$tmp/f32run/metrics.jsonl" && fail "f32: NaN in metrics.jsonl"
"$BIN" info --model "$tmp/f32run" | grep -q "downsampling 32" || fail "f32 run: info"
echo "configs ok"
