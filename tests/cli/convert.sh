#!/bin/sh
# optvq convert: PyTorch checkpoints and safetensors to safetensors, checked by
# round trips; bad input gives exit 1, one line naming the file, and no output.
# Inputs are the committed reference files of tools/gen_weights_ref.py.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
REF=tests/ref/weights
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# .pth -> safetensors, then safetensors -> safetensors gives the same bytes
"$BIN" convert "$REF/ckpt.pth" "$tmp/a.safetensors" >"$tmp/log" 2>&1 || fail "convert ckpt.pth: $(cat "$tmp/log")"
grep -q "16 tensors" "$tmp/log" || fail "unexpected summary: $(cat "$tmp/log")"
"$BIN" convert "$tmp/a.safetensors" "$tmp/b.safetensors" >/dev/null 2>&1 || fail "convert a.safetensors back"
cmp -s "$tmp/a.safetensors" "$tmp/b.safetensors" || fail "round trip changed the file"
# the same state dict saved plainly, deflated, or inside {"model": ...} converts identically
"$BIN" convert "$REF/plain.pth" "$tmp/c.safetensors" >/dev/null 2>&1 || fail "convert plain.pth"
cmp -s "$tmp/a.safetensors" "$tmp/c.safetensors" || fail "plain.pth and ckpt.pth differ"
"$BIN" convert -- "$REF/deflated.pth" "$tmp/d.safetensors" >/dev/null 2>&1 || fail "convert deflated.pth"
cmp -s "$tmp/a.safetensors" "$tmp/d.safetensors" || fail "deflated.pth differs"
# safetensors with F16/BF16/F64 tensors; --model-only strips model. and drops loss.*
"$BIN" convert --model-only --list "$REF/ref.safetensors" "$tmp/m.safetensors" >"$tmp/list" 2>&1 \
    || fail "convert --model-only: $(cat "$tmp/list")"
grep -q "^encoder.conv_in.weight  *(2, 3, 1, 1)$" "$tmp/list" || fail "--list: $(cat "$tmp/list")"
grep -q "loss" "$tmp/list" && fail "--model-only kept a loss tensor"
grep -q "^model\." "$tmp/list" && fail "--model-only kept the model. prefix"
head -c 8 "$tmp/m.safetensors" | od -An -tu8 | awk '{ exit ($1 % 8 != 0) }' || fail "header not padded to 8 bytes"
ls "$tmp" | grep -q '\.tmp\.' && fail "temporary file left behind"

# --help and usage errors
"$BIN" convert --help | grep -q "optvq convert - " || fail "--help"
"$BIN" convert "$REF/ckpt.pth" >/dev/null 2>&1; [ $? -eq 2 ] || fail "one path should exit 2"
"$BIN" convert a b c >/dev/null 2>&1; [ $? -eq 2 ] || fail "three paths should exit 2"
"$BIN" convert --bogus a b >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option should exit 2"

# bad input: exit 1, one line naming the file, no output left behind
expect_bad() { # name, input, expected text
    "$BIN" convert "$2" "$tmp/out-$1.safetensors" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] || fail "$1: exit $rc, want 1"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1: error is not one line: $(cat "$tmp/err")"
    grep -q -- "$(basename "$2")" "$tmp/err" || fail "$1: error '$(cat "$tmp/err")' does not name the file"
    grep -q -- "$3" "$tmp/err" || fail "$1: error '$(cat "$tmp/err")' lacks '$3'"
    [ -z "$(ls "$tmp" | grep "out-$1")" ] || fail "$1: left a file behind"
}
expect_bad missing "$tmp/nope.pth" "cannot open"
head -c 3000 "$REF/ckpt.pth" >"$tmp/trunc.pth"
expect_bad truncated "$tmp/trunc.pth" "zip"
head -c 300 "$REF/ref.safetensors" >"$tmp/trunc.safetensors"
expect_bad truncated_st "$tmp/trunc.safetensors" "past the end"
expect_bad evil "$REF/evil_global.pth" "system"
expect_bad crc "$REF/crc_corrupt.pth" "CRC"
printf 'hello, world, not weights' >"$tmp/junk.bin"
expect_bad junk "$tmp/junk.bin" "safetensors"
# an unwritable destination (a file where a folder must be): exit 1, nothing written
"$BIN" convert "$REF/ckpt.pth" "$tmp/junk.bin/x.safetensors" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "unwritable output should exit 1"
grep -q "x.safetensors" "$tmp/err" || fail "unwritable output: $(cat "$tmp/err")"
echo "convert CLI ok"
