#!/bin/bash
# Benchmark (not a test): optvq serve, POST /api/reconstruct answered per
# second and its latency percentiles (curl's time_total), server at 2 threads,
# CONC clients at once, after a warm-up:
#   - the shipped Fashion-MNIST OptVQ model, a 28x28 upload (32x32 model input);
#   - the f16 h4 ImageNet architecture (72.9M parameters, random weights), a
#     photo resized and cropped to 256x256.
# The shipped model runs twice: with OpenMP's default wait policy and with
# OMP_WAIT_POLICY=passive, which matters on a machine whose cores are busy
# with other work (threads that spin at each barrier then wait for a core).
# Writes the table to bench/results/serve.md.
#   bash bench/serve_bench.sh [N_SMALL] [N_BIG] [CONC]     (after make)
set -euo pipefail
N_SMALL=${1:-200}
N_BIG=${2:-8}
CONC=${3:-2}
BIN=${OPTVQ_BIN:-build/optvq}
BUILD=$(dirname "$BIN")
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
cc -Iinclude bench/serve_random_model.c "$BUILD/liboptvq.a" -fopenmp -lopenblas -lyaml -lcjson -lpng -ljpeg -lz -lm \
    -o "$tmp/random_model"
"$tmp/random_model" configs/imagenet/optvq_256_f16_h4.yaml "$tmp/f16h4"

# bench NAME MODEL IMAGE N [ENV...]: one table row
bench() {
    local name=$1 model=$2 image=$3 n=$4 port
    shift 4
    env "$@" "$BIN" serve --model "$model" --port 0 --threads 2 --queue 64 --queue-timeout 600 >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    port=
    for _ in $(seq 1 300); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "the server did not start"; cat "$tmp/err"; exit 1; }
    local url="http://127.0.0.1:$port/api/reconstruct"
    for _ in 1 2; do curl -sf -o /dev/null -F "image=@$image" "$url"; done # warm-up
    local t0 t1
    t0=$(date +%s.%N)
    seq "$n" | xargs -P "$CONC" -I{} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -F "image=@$image" "$url" \
        >"$tmp/times"
    t1=$(date +%s.%N)
    kill "$pid"
    wait "$pid" || true
    pid=
    local bad
    bad=$(grep -vc '^200 ' "$tmp/times" || true)
    [ "$bad" -eq 0 ] || { echo "$name: $bad requests failed"; sort "$tmp/times" | uniq -c | head; exit 1; }
    awk '{print $2}' "$tmp/times" | sort -g >"$tmp/sorted"
    pct() { awk -v p="$1" '{v[NR] = $1} END {i = int(p * NR + 0.999999); if (i < 1) i = 1; printf "%.1f", 1000 * v[i]}' "$tmp/sorted"; }
    printf '| %s | %d | %.2f | %s | %s | %s |\n' "$name" "$n" "$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN {print n / (b - a)}')" \
        "$(pct 0.5)" "$(pct 0.9)" "$(pct 0.99)"
}
mkdir -p bench/results
{
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; server --threads 2," \
        "$CONC clients at once; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| model, upload | requests | requests/s | p50 ms | p90 ms | p99 ms |"
    echo "|---|---|---|---|---|---|"
    bench "fashion-mnist-optvq (shipped), 28x28 PNG" models/fashion-mnist-optvq src/serve/web/examples/0-boot.png "$N_SMALL"
    bench "the same, OMP_WAIT_POLICY=passive" models/fashion-mnist-optvq src/serve/web/examples/0-boot.png "$N_SMALL" \
        OMP_WAIT_POLICY=passive
    [ "$N_BIG" -eq 0 ] || bench "f16 h4 (random weights), 256x256 from a 211x150 PNG" "$tmp/f16h4" tests/ref/image/chelsea_crop.png "$N_BIG"
} | tee bench/results/serve.md
