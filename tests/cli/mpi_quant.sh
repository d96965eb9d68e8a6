#!/bin/sh
# The Sinkhorn quantizer over 2 MPI ranks equals the single-process quantizer
# on the concatenated batch (tests/mpi/test_quant_mpi.c says exactly what is
# compared). Uses $BUILD/test_quant_mpi from `make check`, else builds it.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
BUILD=$(dirname "$BIN")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

command -v mpirun >/dev/null 2>&1 ||
    fail "mpirun not found: install openmpi-bin and libopenmpi-dev (make deps)"
TEST=$BUILD/test_quant_mpi
if [ ! -x "$TEST" ]; then
    command -v mpicc >/dev/null 2>&1 || fail "mpicc not found: install libopenmpi-dev (make deps)"
    TEST=$tmp/test_quant_mpi
    mpicc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -fopenmp -pthread tests/mpi/test_quant_mpi.c src/mpi/mpi_comm.c \
        "$BUILD/liboptvq.a" ${OPTVQ_LIBS:--lopenblas -lyaml -lcjson -lpng -ljpeg -lz -lm} -lm ${OPTVQ_CFLAGS:-} \
        -o "$TEST" || fail "cannot build tests/mpi/test_quant_mpi.c"
fi

# As root OpenMPI refuses to start without these; --oversubscribe: 2 ranks may
# exceed the cores. One OpenMP thread per rank. Under LeakSanitizer, OpenMPI's
# own allocations are suppressed (tests/mpi/lsan.supp); its libraries have no
# frame pointers, so only the slow unwinder sees that a block came from them.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
LSAN_OPTIONS="suppressions=$(pwd)/tests/mpi/lsan.supp:print_suppressions=0"
ASAN_OPTIONS="fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS ASAN_OPTIONS
timeout 300 mpirun -np 2 --oversubscribe "$TEST" >"$tmp/out" 2>&1 ||
    fail "mpirun -np 2 test_quant_mpi failed (exit $?): $(cat "$tmp/out")"
cat "$tmp/out"
grep -q "^mpi quant: [0-9]* passed, 0 failed$" "$tmp/out" || fail "no closing line: $(cat "$tmp/out")"
! grep -q "FAIL" "$tmp/out" || fail "a case failed"
echo "ok"
