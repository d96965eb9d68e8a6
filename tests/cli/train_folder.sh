#!/bin/sh
# optvq train and its run folder: a second run into a folder that holds one
# is refused unless --resume or --force; --force leaves the old run whole
# until the new run's first checkpoint, then replaces it (stale grids go);
# --resume says when there is nothing to resume or the run is finished; a
# crash in the middle of that replacement is finished by the next start;
# curves.png is a valid PNG, redrawn each epoch and after --resume.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
CFG=tests/ref/train/config.yaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "dataset-fashion-mnist missing"; exit 1; }
# 4 steps an epoch
ARGS="--config $CFG --data fashion-mnist --limit 64 --batch-size 16 --val-limit 16 --threads 2"
sums() { (cd "$1" && md5sum checkpoint.safetensors model.safetensors config.json metrics.jsonl curves.png recon_epoch_*.png); }
png_ok() { # PNG signature, a 1920 x 800 IHDR (3 x 2 charts), the IEND trailer
    [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = "89504e470d0a1a0a" ] || return 1
    [ "$(od -An -tx1 -j12 -N12 "$1" | tr -d ' \n')" = "494844520000078000000320" ] || return 1
    [ "$(tail -c 8 "$1" | head -c 4)" = "IEND" ]
}
one_line() { [ "$(wc -l <"$1")" -eq 1 ] || fail "not one line: $(cat "$1")"; }

# a finished 2-epoch run
"$BIN" train $ARGS --epochs 2 --out "$tmp/a" >"$tmp/log" 2>&1 || fail "first run: $(tail -2 "$tmp/log")"
png_ok "$tmp/a/curves.png" || fail "curves.png is not a 1920x800 PNG"
[ -e "$tmp/a/.pending" ] && fail "a finished run left .pending behind"
sums "$tmp/a" >"$tmp/a.md5" || fail "the run lacks a file"

# a second run into it is refused (exit 2, one line naming --resume and --force) and changes nothing
"$BIN" train $ARGS --epochs 2 --out "$tmp/a" >"$tmp/err" 2>&1
[ $? -eq 2 ] || fail "a second run should exit 2"
one_line "$tmp/err"
grep -q -- "--resume" "$tmp/err" && grep -q -- "--force" "$tmp/err" || fail "message: $(cat "$tmp/err")"
(cd "$tmp/a" && md5sum -c --quiet "$tmp/a.md5") || fail "a refused run changed the folder"
"$BIN" train $ARGS --out "$tmp/a" --resume --force >"$tmp/err" 2>&1; [ $? -eq 2 ] || fail "--resume --force should exit 2"

# --force, stopped before its first checkpoint: the old run is untouched and still resumes (finished: exit 0)
"$BIN" train $ARGS --epochs 1 --seed 3 --out "$tmp/a" --force --stop-after 3 >/dev/null 2>&1 || fail "--force run"
(cd "$tmp/a" && md5sum -c --quiet "$tmp/a.md5") || fail "--force changed the old run before its first checkpoint"
"$BIN" train $ARGS --epochs 2 --out "$tmp/a" --resume >"$tmp/err" 2>&1 ||
    fail "--resume of a finished run should exit 0"
one_line "$tmp/err"
grep -q "finished" "$tmp/err" || fail "message: $(cat "$tmp/err")"
(cd "$tmp/a" && md5sum -c --quiet "$tmp/a.md5") || fail "--resume of a finished run changed it"

# --force to the end: the new 1-epoch run replaces the old one, whose epoch-2 grid goes
"$BIN" train $ARGS --epochs 1 --seed 3 --out "$tmp/a" --force >/dev/null 2>&1 || fail "--force to the end"
[ -e "$tmp/a/recon_epoch_002.png" ] && fail "the old run's recon_epoch_002.png is still there"
[ -e "$tmp/a/.pending" ] && fail "--force left .pending behind"
[ "$(grep -c '"epoch_end"' "$tmp/a/metrics.jsonl")" -eq 1 ] || fail "metrics.jsonl is not the new run's"
[ "$(grep -c '"lr"' "$tmp/a/metrics.jsonl")" -eq 4 ] || fail "metrics.jsonl lacks the new run's 4 steps"
"$BIN" train $ARGS --epochs 1 --seed 3 --out "$tmp/n" >/dev/null 2>&1 || fail "fresh 1-epoch run"
cmp -s "$tmp/a/checkpoint.safetensors" "$tmp/n/checkpoint.safetensors" || fail "--force did not train as a fresh run"
cmp -s "$tmp/a/model.safetensors" "$tmp/n/model.safetensors" || fail "--force left the old model"

# --resume with nothing to resume: stopped before the first checkpoint, or no folder at all (exit 1, one line)
"$BIN" train $ARGS --epochs 2 --out "$tmp/b" --stop-after 2 >/dev/null 2>&1 || fail "stopped run"
"$BIN" train $ARGS --epochs 2 --out "$tmp/b" --resume >"$tmp/err" 2>&1
[ $? -eq 1 ] || fail "--resume without a checkpoint should exit 1"
one_line "$tmp/err"
grep -q "nothing to resume" "$tmp/err" || fail "message: $(cat "$tmp/err")"
"$BIN" train $ARGS --out "$tmp/none" --resume >"$tmp/err" 2>&1
[ $? -eq 1 ] || fail "--resume of a missing folder should exit 1"
grep -q "nothing to resume" "$tmp/err" || fail "message: $(cat "$tmp/err")"
[ -e "$tmp/none" ] && fail "--resume created the folder"
# such a folder holds no run: a plain start takes it
"$BIN" train $ARGS --epochs 2 --out "$tmp/b" --stop-after 5 >/dev/null 2>&1 ||
    fail "restart of a run stopped before its first checkpoint"

# curves.png: drawn at the end of epoch 1, redrawn at the end of epoch 2 after --resume, and at the end
"$BIN" train $ARGS --epochs 3 --out "$tmp/c" --stop-after 5 >/dev/null 2>&1 || fail "curves run"
png_ok "$tmp/c/curves.png" || fail "no valid curves.png after epoch 1"
h1=$(md5sum <"$tmp/c/curves.png")
"$BIN" train $ARGS --epochs 3 --out "$tmp/c" --resume --stop-after 1 >/dev/null 2>&1 || fail "resume, 1 step"
[ "$(md5sum <"$tmp/c/curves.png")" = "$h1" ] || fail "curves.png changed before the epoch ended"
"$BIN" train $ARGS --epochs 3 --out "$tmp/c" --resume --stop-after 5 >/dev/null 2>&1 || fail "resume to epoch 3"
png_ok "$tmp/c/curves.png" || fail "no valid curves.png after epoch 2"
h2=$(md5sum <"$tmp/c/curves.png")
[ "$h2" != "$h1" ] || fail "curves.png not redrawn at the end of epoch 2"
"$BIN" train $ARGS --epochs 3 --out "$tmp/c" --resume >/dev/null 2>&1 || fail "resume to the end"
png_ok "$tmp/c/curves.png" && [ "$(md5sum <"$tmp/c/curves.png")" != "$h2" ] || fail "curves.png not redrawn at the end"
[ "$(grep -c '"lr"' "$tmp/c/metrics.jsonl")" -eq 12 ] || fail "the resumed metrics.jsonl lacks steps"

# a crash while a new run's first checkpoint replaced the old run (its files staged in .pending, some
# moved up already): the next start finishes the replacement
mkdir "$tmp/d" "$tmp/d/.pending"
cp "$tmp/c"/* "$tmp/d/"                                  # the old run: 3 epochs
cp "$tmp/n"/* "$tmp/d/.pending/"                         # the new one: 1 epoch, seed 3
mv "$tmp/d/.pending/metrics.jsonl" "$tmp/d/metrics.jsonl" # moved up before the crash
"$BIN" train $ARGS --epochs 1 --seed 3 --out "$tmp/d" --resume >"$tmp/err" 2>&1 ||
    fail "resume after a crash: $(cat "$tmp/err")"
grep -q "finished" "$tmp/err" || fail "message: $(cat "$tmp/err")"
for f in checkpoint.safetensors model.safetensors metrics.jsonl recon_epoch_001.png; do
    cmp -s "$tmp/n/$f" "$tmp/d/$f" || fail "$f was not replaced by the new run's"
done
[ -e "$tmp/d/recon_epoch_002.png" ] && fail "the old run's recon_epoch_002.png is still there"
[ -e "$tmp/d/.pending" ] && fail ".pending is still there"
echo "train folder CLI ok"
