#!/bin/bash
# Not a test: training curves of optvq beside the reference recipe in PyTorch
# (bench/curves_torch.py), Fashion-MNIST OptVQ config (configs/fashion-mnist/
# optvq.yaml: 1024 codes, 4 heads, batch 1024, OneCycleLR over the whole
# schedule), 3 epochs on all 60,000 training images, seeds 42, 1 and 2, 2
# threads on each side. After every epoch each run records the mean training
# loss (l1, l2, q) and held-out usage, perplexity, PSNR and SSIM on all 10,000
# test images. optvq runs twice per seed: codebook from k-means
# (`use_initiate: kmeans`) and from N(0,1) (`use_initiate: null`, what the
# reference's train.py does without a code file). The side `torchinit`
# (not run unless asked) trains optvq from PyTorch's initial weights for the
# seed (curves_torch.py --save-init, then --init-from and --codebook): the
# same start as the reference's run, so that what the initial draws do is
# told apart from the rest.
#
#   bash bench/curves_side_by_side.sh [--optvq BIN] [--results DIR] [--seeds "42 1 2"]
#        [--epochs 3] [--limit N] [--val-limit 10000] [--batch 1024]
#        [--sides "torch null kmeans torchinit"] [--report bench/results/curves.md] [--report-only]
#
# Hours of CPU: PyTorch ~4 s a step unloaded (58 steps an epoch; 12-22 s without
# the 2 MiB pages of bench/torch_malloc.sh), optvq ~2 s.
# Resumable: each unit (side, start, seed) writes DIR/<unit>/epochs.jsonl; a
# finished unit is skipped when the script runs again, a PyTorch unit killed
# mid-run restarts after its last finished epoch (DIR/<unit>/state.pth), an
# optvq unit with --resume from its last checkpoint. Units run seed by seed,
# the slow PyTorch one first. After every unit the table (REPORT, per epoch
# mean and min..max over seeds) and the curves (REPORT with .png) are rewritten
# from whatever has finished. Run it in the background:
#   mkdir -p runs/curves && nohup nice -n 19 bash bench/curves_side_by_side.sh > runs/curves/log 2>&1 &
set -euo pipefail
if [ -z "${CURVES_SCRIPT_COPY:-}" ]; then
    # bash reads a script while it runs it: run a copy, so that editing this file cannot disturb hours of runs
    copy=$(mktemp /tmp/curves_side_by_side.XXXXXX)
    cp "$0" "$copy"
    CURVES_SCRIPT_COPY=$copy CURVES_REPO=$(cd "$(dirname "$0")/.." && pwd) exec bash "$copy" "$@"
fi
trap 'rm -f "$CURVES_SCRIPT_COPY"' EXIT
cd "$CURVES_REPO"
. bench/torch_malloc.sh
BIN=${OPTVQ_BIN:-build/optvq}
RES=runs/curves
SEEDS="42 1 2"
EPOCHS=3
LIMIT=0
VAL_LIMIT=10000
BATCH=1024
SIDES="torch null kmeans"
REPORT=bench/results/curves.md
REPORT_ONLY=0
usage() { echo "usage: bash bench/curves_side_by_side.sh [--optvq BIN] [--results DIR] [--seeds LIST] [--epochs N] [--limit N] [--val-limit N] [--batch B] [--sides LIST] [--report FILE] [--report-only]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --optvq) BIN=${2:?}; shift 2 ;;
    --results) RES=${2:?}; shift 2 ;;
    --seeds) SEEDS=${2:?}; shift 2 ;;
    --epochs) EPOCHS=${2:?}; shift 2 ;;
    --limit) LIMIT=${2:?}; shift 2 ;;
    --val-limit) VAL_LIMIT=${2:?}; shift 2 ;;
    --batch) BATCH=${2:?}; shift 2 ;;
    --sides) SIDES=${2:?}; shift 2 ;;
    --report) REPORT=${2:?}; shift 2 ;;
    --report-only) REPORT_ONLY=1; shift ;;
    *) usage ;;
    esac
done
for s in $SIDES; do
    case "$s" in torch | null | kmeans | torchinit) ;;
    *) echo "curves: unknown side '$s' (torch, null, kmeans, torchinit)" >&2; exit 2 ;; esac
done
export OMP_NUM_THREADS=2
mkdir -p "$RES"
# one results folder holds one setting: refuse to mix runs of different lengths
settings="epochs=$EPOCHS limit=$LIMIT val_limit=$VAL_LIMIT batch=$BATCH"
if [ -f "$RES/settings" ]; then
    [ "$(cat "$RES/settings")" = "$settings" ] || {
        echo "curves: $RES holds runs with $(cat "$RES/settings"), not $settings; give another --results" >&2; exit 1; }
else
    echo "$settings" >"$RES/settings"
fi
N_TRAIN=$([ "$LIMIT" -gt 0 ] && echo "$LIMIT" || echo 60000)
STEPS=$((N_TRAIN / BATCH)) # the reference's training loader drops the last partial batch

report() {
    /usr/bin/python3 bench/curves_report.py "$RES" "$REPORT" || echo "curves: the report failed (the runs are kept)" >&2
}
finished() { [ -f "$1/epochs.jsonl" ] && [ "$(wc -l <"$1/epochs.jsonl")" -ge "$EPOCHS" ]; }

run_torch() { # SEED DIR
    torch_py bench/curves_torch.py "$2" "$1" --epochs "$EPOCHS" --limit "$LIMIT" --val-limit "$VAL_LIMIT" \
        --batch "$BATCH" --threads 2
}

run_optvq() { # START SEED DIR   (START: null, kmeans, or torchinit: N(0,1) from PyTorch's draws)
    local start=$1 seed=$2 dir=$3
    [ -x "$BIN" ] || { echo "curves: $BIN: no optvq binary (give --optvq)" >&2; return 1; }
    local init=()
    if [ "$start" = torchinit ]; then
        [ -f "$dir/init.pth" ] || /usr/bin/python3 bench/curves_torch.py "$dir" "$seed" --save-init "$dir/init.pth"
        init=(--init-from "$dir/init.pth" --codebook "$dir/init.pth")
        start=null
    fi
    sed "s/use_initiate: [a-z]*/use_initiate: $start/" configs/fashion-mnist/optvq.yaml >"$dir/config.yaml"
    grep -q "use_initiate: $start" "$dir/config.yaml" || { echo "curves: cannot set use_initiate: $start" >&2; return 1; }
    local done_epochs=0
    [ -f "$dir/run/metrics.jsonl" ] && done_epochs=$(grep -c '"epoch_end"' "$dir/run/metrics.jsonl" || true)
    if [ "$done_epochs" -lt "$EPOCHS" ]; then
        local resume=()
        [ -f "$dir/run/checkpoint.safetensors" ] && resume=(--resume)
        local limit=()
        [ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
        [ ${#resume[@]} -gt 0 ] && init=() # a resumed run keeps its own weights
        "$BIN" train --config "$dir/config.yaml" --out "$dir/run" --epochs "$EPOCHS" --seed "$seed" --threads 2 \
            --batch-size "$BATCH" --val-limit "$VAL_LIMIT" "${limit[@]}" "${resume[@]}" "${init[@]}"
    fi
    /usr/bin/python3 - "$dir/run/metrics.jsonl" "$dir/epochs.jsonl" "$STEPS" <<'PY'
import json, os, sys
src, dst, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
per, ends = {}, {}
for line in open(src):
    d = json.loads(line)
    if "epoch_end" in d:
        ends[d["epoch_end"]] = d
    elif "lr" in d:
        per.setdefault(d["epoch"], []).append(d)
out = []
for e in sorted(ends):
    s = per.get(e, [])
    if len(s) != steps:
        sys.exit(f"curves: {src}: epoch {e} took {len(s)} steps, not {steps}: this optvq keeps the last partial "
                 f"batch (the reference drops it): rebuild optvq and remove {os.path.dirname(os.path.dirname(src))}")
    r = {"epoch": e, "steps": len(s)}
    for k in ("loss", "l1", "l2", "q"):
        r[k] = sum(x[k] for x in s) / len(s)
    for k in ("val_usage", "val_perplexity", "val_psnr", "val_ssim", "seconds"):
        r[k] = ends[e][k]
    out.append(r)
with open(dst + ".tmp", "w") as f:
    for r in out:
        f.write(json.dumps(r) + "\n")
os.replace(dst + ".tmp", dst)
PY
}

if [ "$REPORT_ONLY" = 1 ]; then
    report
    exit 0
fi
echo "curves: results in $RES ($settings, $STEPS steps an epoch), optvq $BIN, seeds $SEEDS, sides $SIDES"
echo "curves: $(torch_malloc_line)"
status=0
for seed in $SEEDS; do
    for side in $SIDES; do
        unit="$side-s$seed"
        dir="$RES/$unit"
        if finished "$dir"; then
            echo "curves: $unit finished, skipped"
            continue
        fi
        mkdir -p "$dir"
        echo "curves: $unit started $(date '+%F %T')"
        t0=$(date +%s)
        if [ "$side" = torch ]; then
            run_torch "$seed" "$dir" >>"$dir/log" 2>&1 || { echo "curves: $unit failed: $(tail -1 "$dir/log")"; status=1; }
        else
            run_optvq "$side" "$seed" "$dir" >>"$dir/log" 2>&1 || { echo "curves: $unit failed: $(tail -1 "$dir/log")"; status=1; }
        fi
        echo "curves: $unit ended $(date '+%F %T') after $(( $(date +%s) - t0 )) s"
        report
    done
done
report
exit $status
