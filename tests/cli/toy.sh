#!/bin/sh
# optvq toy: a short run writes a GIF and a PNG, prints the table, is
# deterministic for a seed, and rejects bad options with exit status 2.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fails=0
# Under AddressSanitizer (make check-asan): fontconfig, which cairo's text
# uses, leaks parts of its parsed configuration; that is not ours.
printf 'leak:libfontconfig.so\n' >"$tmp/lsan.supp"
LSAN_OPTIONS="suppressions=$tmp/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# a short run, into a directory that does not exist yet
if ! "$BIN" toy --steps 50 --seed 3 --out "$tmp/a/b" >"$tmp/out1" 2>"$tmp/err1"; then
    fail "toy --steps 50 exited non-zero"; cat "$tmp/err1"
fi
gif="$tmp/a/b/toy.gif"; png="$tmp/a/b/toy.png"
[ -s "$gif" ] || fail "no toy.gif"
[ -s "$png" ] || fail "no toy.png"
[ "$(dd if="$gif" bs=6 count=1 2>/dev/null)" = "GIF89a" ] || fail "toy.gif does not start with GIF89a"
[ "$(dd if="$png" bs=1 skip=1 count=3 2>/dev/null)" = "PNG" ] || fail "toy.png is not a PNG"
[ "$(od -An -tx1 -N8 "$png" | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "toy.png has a bad signature"
# no temporary files left behind
set -- "$tmp/a/b"/*
[ $# -eq 2 ] || fail "extra files in the output directory: $*"

# the table: a header, a row for step 0 and one for the final step 50
grep -q "vanilla used" "$tmp/out1" || fail "no table header"
grep -Eq '^ *0 +[0-9]+/25 +[0-9]+/25 +[0-9.]+ +[0-9.]+$' "$tmp/out1" || fail "no table row for step 0"
grep -Eq '^ *50 +[0-9]+/25 +[0-9]+/25 +[0-9.]+ +[0-9.]+$' "$tmp/out1" || fail "no table row for step 50"
grep -q "toy.gif" "$tmp/out1" || fail "does not say where toy.gif is"

# same seed, same bytes; the table too
"$BIN" toy --steps 50 --seed 3 --out "$tmp/c" >"$tmp/out2" 2>"$tmp/err2" || fail "second run failed"
cmp -s "$gif" "$tmp/c/toy.gif" || fail "same seed gave different GIFs"
cmp -s "$png" "$tmp/c/toy.png" || fail "same seed gave different PNGs"
sed "s|$tmp/c|DIR|g" "$tmp/out2" >"$tmp/t2"
sed "s|$tmp/a/b|DIR|g" "$tmp/out1" >"$tmp/t1"
cmp -s "$tmp/t1" "$tmp/t2" || fail "same seed gave a different table"
# another seed, another picture
"$BIN" toy --steps 50 --seed 4 --out "$tmp/d" >/dev/null 2>&1 || fail "seed 4 run failed"
cmp -s "$gif" "$tmp/d/toy.gif" && fail "seeds 3 and 4 gave the same GIF"

# --frames-every and the other sizes
"$BIN" toy --steps 7 --frames-every 3 --codes 5 --points 9 --out "$tmp/e" >"$tmp/out3" 2>&1 ||
    fail "toy --steps 7 --frames-every 3 --codes 5 --points 9 failed"
grep -q "(4 frames" "$tmp/out3" || fail "--steps 7 --frames-every 3 should give 4 frames"
grep -Eq '^ *7 +[0-9]+/5 ' "$tmp/out3" || fail "no final row with 5 codes"

# --help
"$BIN" toy --help >"$tmp/help" 2>&1 || fail "--help exited non-zero"
grep -q "SYNOPSIS" "$tmp/help" || fail "--help has no SYNOPSIS"

# usage errors: exit 2 with a one-line message
for args in "--bogus" "--steps -1" "--steps abc" "--codes 0" "--points 0" "--seed -5" \
            "--frames-every 0" "--out" "stray" "--steps 1000000 --frames-every 1"; do
    # shellcheck disable=SC2086
    "$BIN" toy --out "$tmp/bad" $args >"$tmp/bout" 2>"$tmp/berr" </dev/null
    rc=$?
    [ "$rc" -eq 2 ] || fail "toy $args exited $rc, expected 2"
    [ "$(wc -l <"$tmp/berr")" -eq 1 ] || fail "toy $args: expected a one-line error, got: $(cat "$tmp/berr")"
done
[ -e "$tmp/bad" ] && fail "a usage error still created the output directory"

# a runtime failure (the output path is a file) exits 1
: >"$tmp/file"
"$BIN" toy --steps 1 --out "$tmp/file" >/dev/null 2>"$tmp/rerr"
rc=$?
[ "$rc" -eq 1 ] || fail "toy --out <a file> exited $rc, expected 1"

[ "$fails" -eq 0 ] && echo "toy: all checks passed"
[ "$fails" -eq 0 ]
