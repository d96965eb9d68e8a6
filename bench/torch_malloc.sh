# Sourced by the bench scripts: how the PyTorch side's memory allocator runs.
#
# PyTorch's CPU tensors come from glibc malloc, which serves every block over
# 32 MiB with its own mmap and unmaps it at free. A training step or a
# Sinkhorn pass then faults all of its large tensors in again, 4 KiB at a time;
# page faults are slow on these virtual machines (a Fashion-MNIST training step
# of the reference recipe spent most of its time in the kernel). glibc's tunable
# glibc.malloc.hugetlb=1 asks for 2 MiB pages on those mappings (madvise), 512x
# fewer faults: the same step took 3.99 s instead of 21.73 s. optvq needs no setting
# (it allocates its buffers once and asks for 2 MiB pages itself), so this is
# the fair comparison and the default here.
#
#   BENCH_TORCH_MALLOC=hugetlb   (default) GLIBC_TUNABLES=glibc.malloc.hugetlb=1
#   BENCH_TORCH_MALLOC=default   glibc's defaults, as a plain `python3` gets them
case "${BENCH_TORCH_MALLOC:-hugetlb}" in
hugetlb) TORCH_GLIBC_TUNABLES="glibc.malloc.hugetlb=1" ;;
default) TORCH_GLIBC_TUNABLES="" ;;
*) echo "bench: BENCH_TORCH_MALLOC must be hugetlb or default, not '$BENCH_TORCH_MALLOC'" >&2; exit 2 ;;
esac
# One line for the report's inputs.
torch_malloc_line() {
    if [ -n "$TORCH_GLIBC_TUNABLES" ]; then
        echo "PyTorch's malloc: GLIBC_TUNABLES=$TORCH_GLIBC_TUNABLES, 2 MiB pages for its large blocks (BENCH_TORCH_MALLOC=default for glibc's defaults)"
    else
        echo "PyTorch's malloc: glibc's defaults (BENCH_TORCH_MALLOC=default)"
    fi
}
# The PyTorch command as a word list, for /usr/bin/time: "${TORCH_PY_CMD[@]}" SCRIPT ARGS...
TORCH_PY_CMD=(env "GLIBC_TUNABLES=$TORCH_GLIBC_TUNABLES" /usr/bin/python3)
# Run the PyTorch side: torch_py SCRIPT ARGS... (any /usr/bin/python3 command line)
torch_py() { "${TORCH_PY_CMD[@]}" "$@"; }
# OpenBLAS (optvq's GEMMs, and PyTorch's BLAS calls; not its oneDNN convolutions)
# picks its kernels by CPU unless OPENBLAS_CORETYPE forces a set: name which.
openblas_line() {
    if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
        echo "OpenBLAS kernels: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
    else
        echo "OpenBLAS kernels: chosen by OpenBLAS for this CPU (OPENBLAS_CORETYPE unset)"
    fi
}
