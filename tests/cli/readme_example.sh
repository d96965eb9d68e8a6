#!/bin/sh
# The C example in README.md compiles without warnings against the built
# library and runs.
set -eu
BUILD=$(dirname "${OPTVQ_BIN:-build/optvq}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^```c$/{f=1;next}/^```$/{f=0}f' README.md >"$tmp/example.c"
[ -s "$tmp/example.c" ] || { echo "no C example in README.md"; exit 1; }
cc -std=c11 -Wall -Wextra -Werror -Iinclude "$tmp/example.c" "$BUILD/liboptvq.a" ${OPTVQ_LIBS:--lopenblas -lyaml -lcjson -lm} -fopenmp \
    ${OPTVQ_CFLAGS:-} -o "$tmp/example"
"$tmp/example" | grep -q "^loss [0-9.]*, first code [0-9]*$"
echo "README example ok"
