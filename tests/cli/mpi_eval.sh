#!/bin/sh
# optvq eval over 2 MPI ranks equals optvq eval in one process: every number
# of the JSON (seconds aside) is the same, FID to 1e-6 relative. Odd image
# counts, so that the ranks' shares differ; Sinkhorn, whose codes depend on
# the batch; LPIPS and rFID with the fixture weights of tests/cli/metrics.sh.
# Rank 0 alone prints and writes; a broken image on rank 1's share stops the
# job with its name instead of leaving rank 0 waiting.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
BUILD=$(dirname "$BIN")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

command -v mpirun >/dev/null 2>&1 ||
    fail "mpirun not found: install openmpi-bin and libopenmpi-dev (make deps)"
# As root OpenMPI refuses to start without these; --oversubscribe: 2 ranks may
# exceed the cores. Under LeakSanitizer, OpenMPI's own allocations are
# suppressed (tests/mpi/lsan.supp).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# OpenMPI's allocations and the CLI's (fontconfig through cairo): one file, as LeakSanitizer reads one
cat tests/lsan.supp tests/mpi/lsan.supp >"$tmp/lsan.supp"
LSAN_OPTIONS="suppressions=$tmp/lsan.supp:print_suppressions=0"
ASAN_OPTIONS="fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS ASAN_OPTIONS

# the same evaluation alone and over 2 ranks (one thread each: the model's
# float32 sums may round differently with another thread count); $1 names it
compare() {
    name=$1; shift
    "$BIN" eval "$@" --threads 1 --json "$tmp/$name-1.json" >"$tmp/out1" 2>"$tmp/err1" ||
        fail "$name, one process: $(cat "$tmp/err1")"
    timeout 600 mpirun -np 2 --oversubscribe "$BIN" eval "$@" --threads 1 --json "$tmp/$name-2.json" \
        >"$tmp/out2" 2>"$tmp/err2" || fail "$name, mpirun -np 2 (exit $?): $(cat "$tmp/err2")"
    [ "$(grep -c '^optvq eval$' "$tmp/out2")" -eq 1 ] || fail "$name: not one table from 2 ranks: $(cat "$tmp/out2")"
    grep -v -e '"seconds"' -e '"fid"' "$tmp/$name-1.json" >"$tmp/cmp1"
    grep -v -e '"seconds"' -e '"fid"' "$tmp/$name-2.json" >"$tmp/cmp2"
    cmp -s "$tmp/cmp1" "$tmp/cmp2" || fail "$name: 2 ranks differ from one process: $(diff "$tmp/cmp1" "$tmp/cmp2")"
    f1=$(sed -n 's/^[[:space:]]*"fid":[[:space:]]*\([-0-9.eE+a-z]*\),*$/\1/p' "$tmp/$name-1.json")
    f2=$(sed -n 's/^[[:space:]]*"fid":[[:space:]]*\([-0-9.eE+a-z]*\),*$/\1/p' "$tmp/$name-2.json")
    if [ "$f1" = null ] || [ "$f2" = null ]; then
        [ "$f1" = "$f2" ] || fail "$name: FID $f1 alone, $f2 over 2 ranks"
    else
        awk -v a="$f1" -v b="$f2" 'BEGIN { d = (a - b) / a; if (d < 0) d = -d; exit d <= 1e-6 ? 0 : 1 }' ||
            fail "$name: FID $f1 alone, $f2 over 2 ranks"
    fi
    echo "ok $name"
}

T=tests/ref/model/taming_small
mkdir "$tmp/imgs"
cp tests/ref/image/chelsea_crop.png tests/ref/image/coffee_crop.jpg tests/ref/image/camera_crop.png \
    tests/ref/image/rand0.png tests/ref/image/rand3.png "$tmp/imgs/"
# 5 images in batches of 2: rank 0 evaluates images 0-3, rank 1 image 4
compare folder_sinkhorn --config "$T/config.yaml" --init-random 7 --data "$tmp/imgs" --batch-size 2
# batches of 1 (3 batches: two on rank 0, one on rank 1), nearest assignment
compare folder_nearest --model "$T/hf" --data "$tmp/imgs" --limit 3 --batch-size 1 --assign nearest
# one batch only: rank 1 has nothing to do
compare one_batch --model "$T/hf" --data "$T/x.npy"
grep -q '"images":[[:space:]]*2,' "$tmp/one_batch-2.json" || fail "one_batch: $(cat "$tmp/one_batch-2.json")"

# LPIPS and rFID (32 x 32 images for the plain model)
cc -std=c11 -Iinclude -Isrc tests/cli/metrics_fixtures.c "$BUILD/liboptvq.a" \
    ${OPTVQ_LIBS:--lopenblas -lyaml -lcjson -lpng -ljpeg -lz -lm} -lm -fopenmp ${OPTVQ_CFLAGS:-} \
    -o "$tmp/fixtures" || fail "cannot build the fixture writer"
mkdir -p "$tmp/fx/a" "$tmp/fx/b"
"$tmp/fixtures" "$tmp/fx" >/dev/null || fail "fixtures"
P=tests/ref/model/plain_vqbase
compare perceptual --config "$P/config.yaml" --weights "$P/model.pth" --data "$tmp/imgs" --batch-size 2 \
    --lpips "$tmp/fx/alex.safetensors,tests/ref/lpips_alex/alex_lin.pth" --fid-weights "$tmp/fx/inception.safetensors"
grep -q '"lpips":[[:space:]]*[0-9]' "$tmp/perceptual-2.json" || fail "perceptual: no LPIPS"
grep -q '"fid":[[:space:]]*[0-9]' "$tmp/perceptual-2.json" || fail "perceptual: no FID"

# a file that does not load in rank 1's share (images 4-5 of 6): the job stops with its name
printf 'not a png' >"$tmp/imgs/zz_broken.png"
timeout 300 mpirun -np 2 --oversubscribe "$BIN" eval --model "$T/hf" --data "$tmp/imgs" --batch-size 2 \
    --threads 1 >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "broken image over 2 ranks: exit $rc"
grep -q "^optvq eval: .*zz_broken.png" "$tmp/err" || fail "broken image: $(cat "$tmp/err")"
! grep -q '^optvq eval$' "$tmp/out" || fail "broken image: a table was printed"
echo "ok"
