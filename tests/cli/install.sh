#!/bin/sh
# make install into a temporary prefix; a program builds against it through
# pkg-config and runs; the installed CLI answers --version.
set -eu
BUILD=$(dirname "${OPTVQ_BIN:-build/optvq}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s install BUILD="$BUILD" PREFIX="$tmp/prefix" >/dev/null
[ -f "$tmp/prefix/include/optvq/optvq.h" ] && [ -f "$tmp/prefix/lib/liboptvq.a" ] && [ -f "$tmp/prefix/lib/liboptvq.so.0" ]
"$tmp/prefix/bin/optvq" --version | grep -q "^optvq [0-9]"
cat >"$tmp/v.c" <<'C'
#include <optvq/optvq.h>
#include <stdio.h>
int main(void) { printf("%s\n", optvq_version()); return optvq_status_string(OPTVQ_OK)[0] != 'o'; }
C
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc ${OPTVQ_CFLAGS:-} "$tmp/v.c" $(pkg-config --cflags optvq) $(pkg-config --libs --static optvq) -o "$tmp/v"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/v" | grep -q "^0\."
# linked against the shared library: found through the RUNPATH optvq.pc adds,
# without LD_LIBRARY_PATH or ldconfig
cc ${OPTVQ_CFLAGS:-} "$tmp/v.c" $(pkg-config --cflags --libs optvq) -o "$tmp/v_shared"
"$tmp/v_shared" | grep -q "^0\." || { echo "a program linked with pkg-config --libs optvq does not run"; exit 1; }
# examples/train_tiny.c trains through the installed headers and library alone
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    cc ${OPTVQ_CFLAGS:-} examples/train_tiny.c $(pkg-config --cflags --libs optvq) -o "$tmp/train_tiny"
    "$tmp/train_tiny" tests/ref/train/config.yaml "$tmp/tiny_run" >"$tmp/tiny.log" 2>&1 ||
        { cat "$tmp/tiny.log"; echo "examples/train_tiny failed"; exit 1; }
    grep -q "^step 4/4 " "$tmp/tiny.log" || { cat "$tmp/tiny.log"; echo "train_tiny: no step 4/4"; exit 1; }
    "$tmp/prefix/bin/optvq" info --model "$tmp/tiny_run" >/dev/null || { echo "train_tiny's model does not load"; exit 1; }
fi
echo "install ok"
