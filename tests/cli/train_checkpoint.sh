#!/bin/sh
# Checkpoints keep integers as integers: the progress (epochs, step, total
# steps, batch, seed) is exact decimal text in the safetensors header's
# __metadata__, so a seed above 2^24 survives; and a checkpoint of the older
# format (float "progress" tensor, tests/ref/train/checkpoint_v1) still
# resumes, to the same final weights as an unbroken run.
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
cmp -s "$tmp/a/model.safetensors" "$tmp/old/model.safetensors" || fail "the resumed version-1 run ends elsewhere"
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
echo "train checkpoint ok"
