#!/bin/sh
# optvq train with the ImageNet-style loss (AELossWithDisc): a tiny taming
# VQGAN + PatchGAN on an image folder; the checkpoint carries the
# discriminator, its optimizer moments and BatchNorm statistics, and a run
# stopped mid-epoch resumes to the same bytes as an unbroken one; LPIPS
# without weights, or with bad ones, fails with a one-line reason.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# the parity test's config without LPIPS (its VGG16 weights are not in the repo)
sed 's/loss_p_weight: 3.0/loss_p_weight: 0.0/' tests/ref/gan_train/config.yaml >"$tmp/gan.yaml"
grep -q "loss_p_weight: 0.0" "$tmp/gan.yaml" || fail "config edit"
mkdir "$tmp/imgs"
cp tests/ref/image/*.png tests/ref/image/*.jpg "$tmp/imgs/"
ARGS="--config $tmp/gan.yaml --data $tmp/imgs --val-data $tmp/imgs --epochs 2 --batch-size 2 --threads 2"

"$BIN" train $ARGS --out "$tmp/a" >"$tmp/a.log" 2>&1 || fail "unbroken run: $(tail -3 "$tmp/a.log")"
grep -q '"g_weight"' "$tmp/a/metrics.jsonl" || fail "no generator terms in metrics.jsonl"
grep -q '"disc_factor": 1' "$tmp/a/metrics.jsonl" || fail "the generator term never switched on (disc_start 1)"
grep -q '"disc_factor": 0' "$tmp/a/metrics.jsonl" || fail "the generator term was on before disc_start"
grep -q 'nan' "$tmp/a/metrics.jsonl" && fail "NaN in metrics.jsonl"
"$BIN" info --model "$tmp/a" | grep -q "64 codes" || fail "info on the run folder"
# the discriminator travels in the checkpoint, not in the model export
grep -a -q "loss.discriminator.main.3.running_var" "$tmp/a/checkpoint.safetensors" || fail "no BatchNorm stats in the checkpoint"
grep -a -q "optimizer.v.loss.discriminator.main.0.weight" "$tmp/a/checkpoint.safetensors" || fail "no discriminator moments"
grep -a -q "loss.discriminator" "$tmp/a/model.safetensors" && fail "the model export carries the discriminator"

steps=$(grep -c '"lr"' "$tmp/a/metrics.jsonl")
"$BIN" train $ARGS --out "$tmp/b" --stop-after $((steps - 1)) >/dev/null 2>&1 || fail "stopped run"
"$BIN" train $ARGS --out "$tmp/b" --resume >/dev/null 2>&1 || fail "resume"
cmp -s "$tmp/a/checkpoint.safetensors" "$tmp/b/checkpoint.safetensors" || fail "resumed state differs from the unbroken run"

# LPIPS: required by loss_p_weight > 0, and its files are checked
"$BIN" train --config tests/ref/gan_train/config.yaml --data "$tmp/imgs" --out "$tmp/c" >"$tmp/err" 2>&1
[ $? -eq 1 ] || fail "loss_p_weight > 0 without --lpips should fail"
grep -q "lpips" "$tmp/err" || fail "message: $(cat "$tmp/err")"
[ -e "$tmp/c" ] && fail "a failed start left $tmp/c behind"
"$BIN" train --config tests/ref/gan_train/config.yaml --data "$tmp/imgs" --out "$tmp/c" \
    --lpips "$tmp/none.pth,$tmp/vgg.pth" >"$tmp/err" 2>&1
[ $? -eq 1 ] || fail "a missing LPIPS file should fail"
grep -q "none.pth" "$tmp/err" || fail "message names the file: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "one-line error: $(cat "$tmp/err")"
echo "train GAN CLI ok"
