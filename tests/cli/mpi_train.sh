#!/bin/sh
# Data-parallel training under mpirun -np 2 equals one process on the global
# batch (to float32 summation-order rounding):
#   - the Fashion-MNIST OptVQ config: 2 ranks x batch 32 vs 1 x batch 64;
#   - a reduced taming VQGAN with the PatchGAN (SyncBatchNorm, the adaptive
#     weight): 2 ranks x batch 2 vs 1 x batch 4, 4 steps (the GAN's hinge and
#     the tiny batch make longer runs chaotic: a kink crossed in one build and
#     not in another sends them apart, whatever the number of ranks);
# "Equal" is the relative L2 error over all weights (tests/cli/weights_close.c
# says why not element by element).
#   - a run whose rank 1 is killed (SIGKILL) in epoch 2 stops as a whole, and
#     --resume continues it, over 2 ranks or over 1 (the checkpoint keeps the
#     global batch), to the weights of the unbroken run;
#   - commands that do not run data parallel are refused under mpirun.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
BUILD=$(dirname "$BIN")
tmp=$(mktemp -d)
mpirun_pid=
cleanup() {
    [ -n "$mpirun_pid" ] && kill -9 "$mpirun_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

command -v mpirun >/dev/null 2>&1 || fail "mpirun not found: install openmpi-bin and libopenmpi-dev (make deps)"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    fail "the Fashion-MNIST files are missing: install dataset-fashion-mnist (make deps)"
cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc tests/cli/weights_close.c "$BUILD/liboptvq.a" \
    ${OPTVQ_LIBS:--lopenblas -lyaml -lcjson -lpng -ljpeg -lz -lm} -lm -fopenmp ${OPTVQ_CFLAGS:-} \
    -o "$tmp/weights_close" || fail "cannot build tests/cli/weights_close.c"

# as root OpenMPI needs these; --oversubscribe: 2 ranks on however many cores
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# OpenMPI's allocations and the CLI's (fontconfig through cairo): one file, as LeakSanitizer reads one
cat tests/lsan.supp tests/mpi/lsan.supp >"$tmp/lsan.supp"
LSAN_OPTIONS="suppressions=$tmp/lsan.supp:print_suppressions=0"
ASAN_OPTIONS="fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS ASAN_OPTIONS
MPI="timeout 600 mpirun -np 2 --oversubscribe"

close() { # A B WHAT
    "$tmp/weights_close" "$1" "$2" 1e-4 >"$tmp/close.out" 2>&1 || fail "$3: $(cat "$tmp/close.out")"
    echo "$3: $(cat "$tmp/close.out")"
}

# 1. Fashion-MNIST OptVQ: 8 steps of 64 images
FM="--config configs/fashion-mnist/optvq.yaml --epochs 1 --limit 512 --val-limit 100 --seed 3 --threads 1"
"$BIN" train $FM --batch-size 64 --out "$tmp/fm1" >"$tmp/log" 2>&1 || fail "1 process: $(tail -3 "$tmp/log")"
$MPI "$BIN" train $FM --batch-size 32 --out "$tmp/fm2" >"$tmp/log" 2>&1 || fail "2 ranks: $(tail -5 "$tmp/log")"
grep -q "data parallel over 2 ranks" "$tmp/log" || fail "no data-parallel line: $(head -3 "$tmp/log")"
[ "$(grep -c 'epoch 1/1 done' "$tmp/log")" -eq 1 ] || fail "progress should come from rank 0 only: $(cat "$tmp/log")"
close "$tmp/fm1/model.safetensors" "$tmp/fm2/model.safetensors" "fashion-mnist optvq, 2 ranks vs 1"
# the first step is the same global batch: the same losses to the printed digits
l1=$(head -1 "$tmp/fm1/metrics.jsonl" | sed 's/"seconds.*//')
l2=$(head -1 "$tmp/fm2/metrics.jsonl" | sed 's/"seconds.*//')
[ "$l1" = "$l2" ] || fail "step 1 differs: $l1 / $l2"
grep -q '"comm_seconds"' "$tmp/fm2/metrics.jsonl" || fail "no comm_seconds in the 2-rank metrics"
[ "$(grep -c '"lr"' "$tmp/fm2/metrics.jsonl")" -eq 8 ] || fail "2 ranks took other than 8 steps"

# 2. taming VQGAN + PatchGAN (BatchNorm -> SyncBatchNorm), no LPIPS weights in the repo
sed 's/loss_p_weight: 3.0/loss_p_weight: 0.0/' tests/ref/gan_train/config.yaml >"$tmp/gan.yaml"
mkdir "$tmp/imgs"
cp tests/ref/image/*.png tests/ref/image/*.jpg "$tmp/imgs/"
GAN="--config $tmp/gan.yaml --data $tmp/imgs --val-data $tmp/imgs --limit 8 --epochs 2 --threads 1"
"$BIN" train $GAN --batch-size 4 --out "$tmp/g1" >"$tmp/log" 2>&1 || fail "GAN, 1 process: $(tail -3 "$tmp/log")"
$MPI "$BIN" train $GAN --batch-size 2 --out "$tmp/g2" >"$tmp/log" 2>&1 || fail "GAN, 2 ranks: $(tail -5 "$tmp/log")"
close "$tmp/g1/checkpoint.safetensors" "$tmp/g2/checkpoint.safetensors" "taming + PatchGAN, 2 ranks vs 1"

# 3. kill rank 1 in epoch 2, then resume: over 2 ranks to the bytes of the unbroken 2-rank run, in 1
# process (the checkpoint keeps the global batch) to its weights within rounding
KR="--config configs/fashion-mnist/optvq.yaml --epochs 3 --limit 1024 --val-limit 64 --seed 5 --threads 1"
$MPI "$BIN" train $KR --batch-size 32 --out "$tmp/k1" >"$tmp/log" 2>&1 || fail "unbroken run: $(tail -5 "$tmp/log")"
$MPI "$BIN" train $KR --batch-size 32 --out "$tmp/k2" >"$tmp/klog" 2>&1 &
mpirun_pid=$!
i=0
while [ ! -f "$tmp/k2/checkpoint.safetensors" ] && [ $i -lt 6000 ]; do sleep 0.05; i=$((i + 1)); done
[ -f "$tmp/k2/checkpoint.safetensors" ] || fail "no checkpoint after epoch 1: $(tail -5 "$tmp/klog")"
victim=
for p in $(pgrep -f "optvq train .*$tmp/k2"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=1$'; then victim=$p; fi
done
[ -n "$victim" ] || fail "rank 1 not found"
kill -9 "$victim"
wait "$mpirun_pid"
st=$?
mpirun_pid=
[ $st -ne 0 ] || fail "the job went on after rank 1 died"
grep -q '"epoch_end": 3' "$tmp/k2/metrics.jsonl" && fail "rank 1 was killed after the run had finished (too fast a machine?)"
cp -r "$tmp/k2" "$tmp/k3"
$MPI "$BIN" train $KR --out "$tmp/k2" --resume >"$tmp/log" 2>&1 || fail "resume over 2 ranks: $(tail -5 "$tmp/log")"
cmp -s "$tmp/k1/checkpoint.safetensors" "$tmp/k2/checkpoint.safetensors" ||
    fail "killed rank 1, resumed over 2 ranks: the state differs from the unbroken run"
echo "killed rank 1, resumed over 2 ranks: the unbroken run's bytes"
"$BIN" train $KR --out "$tmp/k3" --resume >"$tmp/log" 2>&1 || fail "resume in 1 process: $(tail -5 "$tmp/log")"
[ "$(grep -c '"lr"' "$tmp/k3/metrics.jsonl")" -eq 48 ] || fail "the resumed run does not hold 48 steps"
"$tmp/weights_close" "$tmp/k1/model.safetensors" "$tmp/k3/model.safetensors" 1e-4 >"$tmp/close.out" 2>&1 ||
    fail "killed rank 1, resumed in 1 process: $(cat "$tmp/close.out")"
echo "killed rank 1, resumed in 1 process: $(cat "$tmp/close.out")"

# 4. other commands are refused under mpirun
$MPI "$BIN" info --model "$tmp/fm1" >"$tmp/log" 2>&1 && fail "info under mpirun -np 2 should fail"
grep -q "does not run over MPI ranks" "$tmp/log" || fail "message: $(cat "$tmp/log")"
echo "mpi train ok"
