#!/bin/bash
# The README's full-length results on Fashion-MNIST: each config trained with
# the reference's whole schedule (its train.epochs x 60,000 images at its
# batch size), then `optvq eval` on the 10,000 test images. Hours on 2 cores;
# resumable: run it again after an interruption and it continues each run
# from its last epoch (optvq train --resume).
#   bash scripts/fashion-mnist-full.sh [RUNS_DIR] [THREADS]     (after make)
# Prints a Markdown table and writes it to RUNS_DIR/results.md.
set -euo pipefail
RUNS=${1:-runs/fashion-mnist-full}
THREADS=${2:-$(nproc)}
BIN=${OPTVQ_BIN:-build/optvq}
mkdir -p "$RUNS"
echo "inputs: configs/fashion-mnist/{optvq,vqbase}.yaml, all epochs, $THREADS threads, runs in $RUNS"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"

# train.epochs of CONFIG
epochs_wanted() { sed -n 's/^  epochs: *\([0-9]*\).*/\1/p' "configs/fashion-mnist/$1.yaml"; }
# epochs finished by RUN (0 when it has not started)
epochs_done() { if [ -f "$1/metrics.jsonl" ]; then grep -c '"epoch_end"' "$1/metrics.jsonl" || true; else echo 0; fi; }

for cfg in optvq vqbase; do
    run="$RUNS/$cfg"
    want=$(epochs_wanted "$cfg")
    done_=$(epochs_done "$run")
    if [ "$done_" -ge "$want" ]; then
        echo "$cfg: $done_/$want epochs already trained"
    elif [ -f "$run/stopped.txt" ]; then
        echo "$cfg: stopped after $done_/$want epochs: $(cat "$run/stopped.txt") (delete $run/stopped.txt to retry)"
    else
        resume=()
        [ -f "$run/checkpoint.safetensors" ] && resume=(--resume)
        echo "$cfg: training from epoch $done_ of $want"
        # A run that fails (the vanilla-VQ recipe diverges: bench/vqbase_divergence.sh)
        # keeps its last checkpoint, which is evaluated and reported as stopped.
        # (stderr goes to the terminal and to RUNS/CFG.train.err, beside the run folder, which
        # optvq train creates only at its first checkpoint; pipefail gives train's status)
        if ! { "$BIN" train --config "configs/fashion-mnist/$cfg.yaml" --out "$run" --threads "$THREADS" \
                "${resume[@]}" 2>&1 1>&3 | tee "$RUNS/$cfg.train.err" >&2; } 3>&1; then
            mkdir -p "$run"
            tail -n 1 "$RUNS/$cfg.train.err" | sed 's/^optvq train: //' > "$run/stopped.txt"
            echo "$cfg: training stopped: $(cat "$run/stopped.txt"); evaluating its last checkpoint"
        fi
    fi
    "$BIN" eval --model "$run" --data fashion-mnist --threads "$THREADS" --json "$run/eval.json" >/dev/null
done

# One row per config: the test-set evaluation, the last epoch's training-set
# usage and the summed epoch times (over every resumed piece of the run).
row() {
    local cfg=$1 run="$RUNS/$1"
    get() { sed -n "s/.*\"$1\":[[:space:]]*\([-0-9.e+]*\).*/\1/p" "$run/eval.json" | head -1; }
    local n secs hours med tu status=""
    [ -f "$run/stopped.txt" ] && status=" of $(epochs_wanted "$cfg"), stopped"
    n=$(grep -c '"epoch_end"' "$run/metrics.jsonl")
    secs=$(grep '"epoch_end"' "$run/metrics.jsonl" | sed 's/.*"seconds": \([0-9.]*\).*/\1/')
    hours=$(echo "$secs" | awk '{s += $1} END {printf "%.2f", s / 3600}')
    # The median epoch: what an epoch takes on the machine when nothing else
    # runs; the summed hours include epochs slowed by other work.
    med=$(echo "$secs" | sort -n | awk '{v[NR] = $1} END {printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
    tu=$(grep '"epoch_end"' "$run/metrics.jsonl" | tail -1 | sed 's/.*"train_usage": \([0-9.e-]*\).*/\1/')
    awk -v c="$cfg" -v n="$n" -v h="$hours" -v m="$med" -v tu="$tu" -v u="$(get usage)" -v p="$(get perplexity)" \
        -v d="$(get dead_codes)" -v ps="$(get psnr)" -v ss="$(get ssim)" \
        -v st="$status" \
        'BEGIN {printf "| %s | %d%s | %s | %s s | %.1f%% | %.1f%% | %.1f | %d | %.2f | %.4f |\n", c, n, st, h, m, 100 * tu, 100 * u, p, d, ps, ss}'
}
{
echo "| config | epochs | train hours | median epoch | train usage (last epoch) | test usage | test perplexity | dead codes | test PSNR | test SSIM |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for cfg in optvq vqbase; do row "$cfg"; done
for cfg in optvq vqbase; do
    if [ -f "$RUNS/$cfg/stopped.txt" ]; then
        printf '\n%s stopped at %s; its row is its last checkpoint.\n' "$cfg" "$(cat "$RUNS/$cfg/stopped.txt")"
    fi
done
} | tee "$RUNS/results.md"
