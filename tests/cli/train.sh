#!/bin/sh
# optvq train: a run stopped mid-epoch (--stop-after) or killed with SIGKILL at
# random moments resumes (--resume) to the same final weights as an unbroken
# run, byte for byte; the outputs load with optvq encode; bad settings fail.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
CFG=tests/ref/train/config.yaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
DATA=fashion-mnist
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "dataset-fashion-mnist missing"; exit 1; }
ARGS="--config $CFG --data $DATA --limit 96 --epochs 3 --batch-size 16 --val-limit 32 --threads 2"

"$BIN" train $ARGS --out "$tmp/a" >"$tmp/a.log" 2>&1 || fail "unbroken run: $(tail -3 "$tmp/a.log")"
for f in checkpoint.safetensors model.safetensors config.json metrics.jsonl recon_epoch_003.png; do
    [ -s "$tmp/a/$f" ] || fail "missing $f"
done
[ "$(grep -c '"epoch_end"' "$tmp/a/metrics.jsonl")" -eq 3 ] || fail "metrics.jsonl lacks 3 epoch lines"
[ "$(grep -c '"lr"' "$tmp/a/metrics.jsonl")" -eq 18 ] || fail "metrics.jsonl lacks 18 step lines"
grep -q "epoch 3/3 done" "$tmp/a.log" || fail "no epoch summary"

# stopped mid-epoch 2, then resumed
"$BIN" train $ARGS --out "$tmp/b" --stop-after 9 >/dev/null 2>&1 || fail "stopped run"
"$BIN" train $ARGS --out "$tmp/b" --resume >/dev/null 2>&1 || fail "resume"
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || fail "resumed weights differ from the unbroken run"
cmp -s "$tmp/a/checkpoint.safetensors" "$tmp/b/checkpoint.safetensors" || fail "resumed optimizer state differs"
[ "$(grep -c '"lr"' "$tmp/b/metrics.jsonl")" -eq 18 ] || fail "resumed metrics.jsonl has duplicate steps"

# SIGKILL at random moments: every state left behind resumes to the same end
# (a checkpoint still in .pending is one: the next start moves it up)
has_checkpoint() { [ -f "$1/checkpoint.safetensors" ] || [ -f "$1/.pending/checkpoint.safetensors" ]; }
i=0
while [ $i -lt 4 ]; do
    "$BIN" train $ARGS --out "$tmp/c" $(has_checkpoint "$tmp/c" && echo --resume) >/dev/null 2>&1 &
    pid=$!
    sleep "0.$(( (i * 37 + 13) % 9 + 1 ))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    for t in "$tmp"/c/*.tmp.*; do [ -e "$t" ] && rm -f "$t"; done  # a killed write leaves only a temp file
    i=$((i + 1))
done
if has_checkpoint "$tmp/c"; then
    "$BIN" train $ARGS --out "$tmp/c" --resume >/dev/null 2>&1 || fail "resume after SIGKILL"
else
    "$BIN" train $ARGS --out "$tmp/c" >/dev/null 2>&1 || fail "restart after SIGKILL before any checkpoint"
fi
cmp -s "$tmp/a/model.safetensors" "$tmp/c/model.safetensors" || fail "weights after SIGKILLs differ"

# a folder of PNG/JPEG images: random crop + flip for training, centre crop for validation
sed 's/in_dim: 1/in_dim: 3/; s/out_dim: 1/out_dim: 3/' "$CFG" >"$tmp/c3.yaml"
mkdir "$tmp/imgs"
cp tests/ref/image/*.png tests/ref/image/*.jpg "$tmp/imgs/"
"$BIN" train --config "$tmp/c3.yaml" --data "$tmp/imgs" --val-data "$tmp/imgs" --out "$tmp/e" --epochs 2 \
    --batch-size 4 --threads 2 >"$tmp/e.log" 2>&1 || fail "training on an image folder: $(tail -2 "$tmp/e.log")"
[ -s "$tmp/e/recon_epoch_002.png" ] || fail "folder run: no reconstruction grid"

# the run folder is a model folder
"$BIN" info --model "$tmp/a" | grep -q "64 codes" || fail "info on the run folder"

# bad settings
"$BIN" train $ARGS --out "$tmp/a" --resume --batch-size 32 >"$tmp/err" 2>&1; [ $? -eq 1 ] || fail "resume with another batch size should fail"
grep -q "other settings" "$tmp/err" || fail "resume mismatch message: $(cat "$tmp/err")"
"$BIN" train --config "$CFG" --out "$tmp/d" --data /nonexistent.npy >"$tmp/err" 2>&1; [ $? -eq 1 ] || fail "missing data"
grep -q "nonexistent.npy" "$tmp/err" || fail "missing data message"
echo "train CLI ok"
