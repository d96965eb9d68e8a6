#!/usr/bin/env bash
# run_quant.sh — the quantizer benchmark: optvq vs PyTorch (the reference
# module re-implemented in bench/torch_quant.py) vs faiss, on this machine.
#
#   make && bash bench/run_quant.sh
#
# Every measured row runs in its own fresh process (one warm-up, then REPS
# timed runs, median reported) so that the process's peak RSS belongs to that
# row alone. The table goes to stdout and to bench/results/quant.md.
# Knobs (environment): THREADS (2), OPTVQ_REPS (5), TORCH_REPS (5),
# TORCH_SINKHORN_REPS (3: the slow PyTorch rows), FAISS_REPS (5).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
PY=/usr/bin/python3
THREADS="${THREADS:-2}"
OPTVQ_REPS="${OPTVQ_REPS:-5}"
TORCH_REPS="${TORCH_REPS:-5}"
TORCH_SINKHORN_REPS="${TORCH_SINKHORN_REPS:-3}"
FAISS_REPS="${FAISS_REPS:-5}"
OUT_MD="$ROOT/bench/results/quant.md"

if [ ! -f "$BUILD/liboptvq.a" ]; then
    echo "run_quant.sh: $BUILD/liboptvq.a is missing; run 'make' at the top level first" >&2
    exit 1
fi
make -s -C "$ROOT/bench" BUILD="$BUILD" quant >/dev/null
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
mkdir -p "$ROOT/bench/results"

REPORT="$(mktemp)"
RAW="$(mktemp)"
trap 'rm -f "$REPORT" "$RAW"' EXIT
say() { printf '%s\n' "$*" | tee -a "$REPORT"; }

cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
torch_v="$($PY -c 'import torch; print(torch.__version__)')"
faiss_v="$(grep -ho 'FAISS_VERSION_\(MAJOR\|MINOR\|PATCH\) [0-9]*' /usr/include/faiss/Index.h | awk '{printf "%s%s", sep, $2; sep="."}')"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')"

say "# optvq quantizer benchmark"
say ""
say "Inputs"
say ""
say "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); optvq commit $commit"
say "- CPU: $cpu; $(nproc) cores online; $(free -g | awk '/^Mem:/{print $2}') GiB RAM; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "- threads: $THREADS (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS; torch.set_num_threads($THREADS); faiss omp_set_num_threads($THREADS))"
say "- PyTorch $torch_v at $PY; faiss $faiss_v (IndexFlatL2, k=1); OpenBLAS $(dpkg-query -W -f='${Version}' libopenblas0 2>/dev/null || echo '?')"
say "- $(torch_malloc_line)"
say "- (a) mnist:    x (1024, 8, 8, 8) NCHW, 4 heads, code_dim 2, n_e 1024 -> N = 262144 vectors; cost matrix 262144 x 1024 (1 GiB f32)"
say "- (b) imagenet: x (8, 256, 16, 16) NCHW, 4 heads, code_dim 64, n_e 16384 -> N = 8192 vectors; cost matrix 8192 x 16384 (512 MiB f32)"
say "- quantizer: use_proj on, l2 loss, beta 0.25; sinkhorn: epsilon 10, n_iters 5, normalize all, argmax (use_prob=False); nearest: argmin of cdist"
say "- fwd = forward (x_q, loss, indices), autograd on in PyTorch; fwd+bwd = zero grads + forward + backward of loss + sum(x_q * G) wrt x, embedding, proj weight, proj bias"
say "- data: x, G ~ N(0,1), parameters initialised as PyTorch does; fixed seeds; generated inside each process (optvq and PyTorch draw different random numbers)"
say "- timing: one warm-up, then the median of REPS runs (optvq $OPTVQ_REPS; PyTorch $TORCH_REPS, sinkhorn rows $TORCH_SINKHORN_REPS; faiss $FAISS_REPS)"
say "- peak MiB: ru_maxrss of a fresh process that runs only that row (includes the inputs, and for PyTorch the ~235 MiB of the imported library)"
say ""

declare -A MED MIN PEAK REPS EXTRA
run_row() { # key, command...
    local key="$1"; shift
    local line
    if ! line="$("$@" | grep '^RESULT')"; then
        echo "run_quant.sh: failed: $*" >&2
        exit 1
    fi
    echo "$key $line" >>"$RAW"
    MED[$key]="$(sed -n 's/.*median_ms=\([^ ]*\).*/\1/p' <<<"$line")"
    MIN[$key]="$(sed -n 's/.*min_ms=\([^ ]*\).*/\1/p' <<<"$line")"
    PEAK[$key]="$(sed -n 's/.*peak_mib=\([^ ]*\).*/\1/p' <<<"$line")"
    REPS[$key]="$(sed -n 's/.*reps=\([^ ]*\).*/\1/p' <<<"$line")"
    EXTRA[$key]="$(sed -n 's/.*\(codes_used=[^ ]*\|agree=[^ ]*\).*/\1/p' <<<"$line")"
    printf '  %-34s median %10.1f ms  (min %10.1f)  peak %8.1f MiB\n' "$key" "${MED[$key]}" "${MIN[$key]}" "${PEAK[$key]}" >&2
}

CONFIGS="mnist imagenet"
echo "running (each row a fresh process) ..." >&2
for cfg in $CONFIGS; do
    for assign in sinkhorn nearest; do
        for op in fwd fwdbwd; do
            run_row "optvq/$cfg/$assign/$op" "$BUILD/bench/bench_quant" "$cfg" "$assign" "$op" "$OPTVQ_REPS"
            treps="$TORCH_REPS"
            [ "$assign" = sinkhorn ] && treps="$TORCH_SINKHORN_REPS"
            run_row "torch/$cfg/$assign/$op" torch_py "$ROOT/bench/torch_quant.py" "$cfg" "$assign" "$op" "$treps" "$THREADS"
        done
    done
    run_row "optvq/$cfg/nearest/assign" "$BUILD/bench/bench_quant" "$cfg" nearest assign "$OPTVQ_REPS"
    run_row "faiss/$cfg/nearest/search" "$BUILD/bench/faiss_nearest" "$cfg" "$FAISS_REPS" "$THREADS"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", b / a }'; }
say "optvq vs PyTorch (median ms; speedup = torch / optvq)"
say ""
say "| config | op | optvq ms | torch ms | speedup | optvq peak MiB | torch peak MiB | reps optvq/torch |"
say "|---|---|---:|---:|---:|---:|---:|---:|"
sk_ok=1
for cfg in $CONFIGS; do
    for assign in sinkhorn nearest; do
        for op in fwd fwdbwd; do
            o="optvq/$cfg/$assign/$op" t="torch/$cfg/$assign/$op"
            opname="$assign $([ "$op" = fwd ] && echo fwd || echo fwd+bwd)"
            sp="$(ratio "${MED[$o]}" "${MED[$t]}")"
            if [ "$assign" = sinkhorn ] && awk -v s="${sp%x}" 'BEGIN { exit !(s < 10) }'; then sk_ok=0; fi
            say "$(printf '| %s | %s | %.1f | %.1f | %s | %.1f | %.1f | %s/%s |' "$cfg" "$opname" "${MED[$o]}" "${MED[$t]}" "$sp" \
                "${PEAK[$o]}" "${PEAK[$t]}" "${REPS[$o]}" "${REPS[$t]}")"
        done
    done
done
say ""
say "Nearest-code assignment vs faiss (median ms; optvq = forward with indices only, public API, from NCHW input;"
say "faiss = IndexFlatL2.search(k=1) of the (N, code_dim) vectors, reordering and add() not timed; ratio = faiss / optvq)"
say ""
say "| config | search | optvq ms | faiss ms | ratio | optvq peak MiB | faiss peak MiB | same index | reps |"
say "|---|---|---:|---:|---:|---:|---:|---:|---:|"
nn_ok=1
for cfg in $CONFIGS; do
    o="optvq/$cfg/nearest/assign" f="faiss/$cfg/nearest/search"
    case $cfg in mnist) shape="262144 x 2 vs 1024" ;; imagenet) shape="8192 x 64 vs 16384" ;; esac
    sp="$(ratio "${MED[$o]}" "${MED[$f]}")"
    if awk -v s="${sp%x}" 'BEGIN { exit !(s < 1) }'; then nn_ok=0; fi
    say "$(printf '| %s | %s | %.1f | %.1f | %s | %.1f | %.1f | %s | %s/%s |' "$cfg" "$shape" "${MED[$o]}" "${MED[$f]}" "$sp" \
        "${PEAK[$o]}" "${PEAK[$f]}" "${EXTRA[$f]#agree=}" "${REPS[$o]}" "${REPS[$f]}")"
done
say ""
say "Memory-traffic floor of the materialized Sinkhorn (\`bench_membw\`: the passes over a matrix of each size, 2 MiB pages, $THREADS threads)"
say ""
say '```'
for mib in 1024 512; do
    say "$(OMP_NUM_THREADS=$THREADS "$BUILD/bench/bench_membw" "$mib" 5)"
done
say '```'
say ""
say "Targets"
say ""
say "- sinkhorn >= 10x faster than PyTorch at both sizes (fwd and fwd+bwd): $([ $sk_ok = 1 ] && echo MET || echo NOT MET)"
say "- nearest at least as fast as faiss at both sizes: $([ $nn_ok = 1 ] && echo MET || echo NOT MET)"
say ""
say "Raw (min ms over the timed runs; codes used by the last step)"
say ""
say '```'
while read -r key rest; do
    say "$(printf '%-30s %s' "$key" "$(sed -e 's/.*min_ms=\([^ ]*\).*/min_ms=\1/' <<<"$rest") ${EXTRA[$key]}")"
done <"$RAW"
say '```'
say ""
say "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared; medians are noisy under load)"
cp "$REPORT" "$OUT_MD"
echo "written: $OUT_MD" >&2
