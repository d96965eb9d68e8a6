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
echo "install ok"
