#!/bin/sh
# Checkpoints keep integers as integers: the progress (epochs, step, total
# steps, batch, seed) is exact decimal text in the safetensors header's
# __metadata__, so a seed above 2^24 survives; and a checkpoint of the older
# format (float "progress" tensor, tests/ref/train/checkpoint_v1, written by
# optvq 0.1.0) still resumes to the end.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "dataset-fashion-mnist missing"; exit 1; }
ARGS="--config tests/ref/train/config.yaml --data fashion-mnist --limit 96 --epochs 3 --batch-size 16 --val-limit 32 --threads 2"

"$BIN" train $ARGS --out "$tmp/a" >/dev/null 2>&1 || fail "unbroken run"
cp -r tests/ref/train/checkpoint_v1 "$tmp/old"
rm -f "$tmp/old/README"
"$BIN" train $ARGS --out "$tmp/old" --resume >"$tmp/old.log" 2>&1 || fail "resume of a version-1 checkpoint: $(tail -3 "$tmp/old.log")"
# (the file was written by optvq 0.1.0's -O2 build: another build's float rounding may differ, so the
# byte-exact equivalence of the two formats is checked in tests/test_train_init.c instead)
"$BIN" info --model "$tmp/old" >/dev/null || fail "the resumed version-1 run's model does not load"
[ "$(grep -c '"epoch_end"' "$tmp/old/metrics.jsonl")" -eq 3 ] || fail "the resumed version-1 run did not finish 3 epochs"
head -c 4096 "$tmp/old/checkpoint.safetensors" | tr -d '\000' | grep -q '"optvq.checkpoint":"2"' ||
    fail "a rewritten checkpoint is not version 2"
head -c 4096 "$tmp/a/checkpoint.safetensors" | tr -d '\000' | grep -q '"optvq.step":"18"' ||
    fail "the step is not in the metadata: $(head -c 300 "$tmp/a/checkpoint.safetensors" | tr -d '\000')"

# a seed that float32 cannot hold: stopped and resumed, still the same run
big=123456789012
"$BIN" train $ARGS --seed $big --out "$tmp/b" --stop-after 8 >/dev/null 2>&1 || fail "stopped run with a large seed"
head -c 4096 "$tmp/b/checkpoint.safetensors" | tr -d '\000' | grep -q "\"optvq.seed\":\"$big\"" || fail "seed not exact"
"$BIN" train $ARGS --seed $big --out "$tmp/b" --resume >/dev/null 2>&1 || fail "resume with a large seed"
"$BIN" train $ARGS --seed $big --out "$tmp/c" >/dev/null 2>&1 || fail "unbroken run with a large seed"
cmp -s "$tmp/b/model.safetensors" "$tmp/c/model.safetensors" || fail "large seed: resumed run differs"
# --init-from / --codebook from the CLI: the first step starts from PyTorch's weights (loss 1.790713)
"$BIN" train --config tests/ref/train/config.yaml --init-from tests/ref/train/init.pth \
    --codebook tests/ref/train/init.pth --data tests/ref/train/batch_0.npy --batch-size 16 --epochs 1 \
    --val-limit 0 --out "$tmp/init" >/dev/null 2>&1 || fail "--init-from"
head -1 "$tmp/init/metrics.jsonl" | grep -q '"loss": 1.79071[0-9]*,' || fail "--init-from: $(head -1 "$tmp/init/metrics.jsonl")"
"$BIN" train --config tests/ref/train/config.yaml --init-from tests/ref/model/taming_small/hf \
    --data tests/ref/train/batch_0.npy --batch-size 16 --epochs 1 --out "$tmp/init2" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "--init-from a foreign model should exit 1"
grep -q "is not a parameter of this model" "$tmp/err" || fail "--init-from foreign: $(cat "$tmp/err")"
echo "train checkpoint ok"
