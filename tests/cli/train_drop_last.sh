#!/bin/sh
# optvq train drops the last partial batch of each shuffled epoch, as the
# reference's DataLoader(drop_last=True): an epoch of N images at batch B is
# floor(N / B) full steps (100 images at 16: 6 steps, not 7), a run stopped
# mid-epoch resumes to the same weights, fewer images than one batch are
# refused with a one-line reason, and --epochs 0 needs no full batch.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
CFG=tests/ref/train/config.yaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "dataset-fashion-mnist missing"; exit 1; }
ARGS="--config $CFG --data fashion-mnist --limit 100 --epochs 2 --batch-size 16 --val-limit 40 --threads 2"

"$BIN" train $ARGS --out "$tmp/a" >"$tmp/a.log" 2>&1 || fail "run: $(tail -3 "$tmp/a.log")"
[ "$(grep -c '"lr"' "$tmp/a/metrics.jsonl")" -eq 12 ] ||
    fail "100 images at batch 16 for 2 epochs: $(grep -c '"lr"' "$tmp/a/metrics.jsonl") steps, not 2 x floor(100/16) = 12"
for e in 1 2; do
    n=$(grep '"lr"' "$tmp/a/metrics.jsonl" | grep -c "\"epoch\": $e,")
    [ "$n" -eq 6 ] || fail "epoch $e took $n steps, not 6"
done
grep -q '"epoch_end": 2, "step": 12,' "$tmp/a/metrics.jsonl" || fail "epoch 2 does not end at step 12"
grep -q "step 6/6" "$tmp/a.log" || fail "the progress lines do not count 6 steps an epoch: $(tail -2 "$tmp/a.log")"

# stopped in the middle of epoch 2, then resumed: the same weights as the unbroken run
"$BIN" train $ARGS --out "$tmp/b" --stop-after 9 >/dev/null 2>&1 || fail "stopped run"
"$BIN" train $ARGS --out "$tmp/b" --resume >/dev/null 2>&1 || fail "resume"
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || fail "resumed weights differ from the unbroken run"
[ "$(grep -c '"lr"' "$tmp/b/metrics.jsonl")" -eq 12 ] || fail "the resumed run's metrics.jsonl does not hold 12 steps"

# fewer images than one batch: no step to take
"$BIN" train --config "$CFG" --data fashion-mnist --limit 10 --batch-size 16 --epochs 1 --val-limit 0 \
    --out "$tmp/c" >"$tmp/err" 2>&1
[ $? -eq 1 ] || fail "10 images at batch 16 should be refused"
grep -q "fewer than one batch of 16" "$tmp/err" || fail "message: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "one-line error: $(cat "$tmp/err")"
# ... but --epochs 0 (the initial weights only) takes no step and needs none
"$BIN" train --config "$CFG" --data fashion-mnist --limit 10 --batch-size 16 --epochs 0 --val-limit 0 \
    --out "$tmp/d" >"$tmp/err" 2>&1 || fail "--epochs 0 with 10 images: $(cat "$tmp/err")"
[ -s "$tmp/d/model.safetensors" ] || fail "--epochs 0 wrote no model"
echo "train drop_last ok"
