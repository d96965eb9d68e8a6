#!/bin/sh
# optvq quantize: outputs, gradients, and bad input (one-line error, exit 1,
# nothing written). Inputs come from the committed reference cases.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
REF=tests/ref/quant/sinkhorn_all_l2_h4_p1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
nh=$(sed -n 's/^num_head //p' "$REF/config.txt")

# a good run writes the three outputs and prints usage
"$BIN" quantize --input "$REF/x.npy" --embedding "$REF/embedding.npy" --proj-weight "$REF/proj_weight.npy" \
    --proj-bias "$REF/proj_bias.npy" --num-head "$nh" --grad-out "$REF/grad_out.npy" --out "$tmp/ok" >"$tmp/log" \
    || fail "good run failed: $(cat "$tmp/log")"
for f in indices x_q loss grad_x grad_embedding grad_proj_weight grad_proj_bias; do
    [ -s "$tmp/ok/$f.npy" ] || fail "missing $f.npy"
done
grep -q "codes used" "$tmp/log" || fail "no usage line"
cmp -s "$tmp/ok/indices.npy" "$REF/indices.npy" || fail "indices differ from the reference"

# --help and usage errors
"$BIN" quantize --help | grep -q "optvq quantize - " || fail "--help"
"$BIN" quantize --input x.npy >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing required options should exit 2"
"$BIN" quantize --bogus 1 >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option should exit 2"
"$BIN" quantize --input a --embedding b --out c --assign best >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad choice"

# bad input: exit 1, one line naming the file, no output left behind
expect_bad() { # name, expected text, args...
    name=$1; text=$2; shift 2
    "$BIN" quantize "$@" --out "$tmp/$name" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] || fail "$name: exit $rc, want 1"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$name: error is not one line: $(cat "$tmp/err")"
    grep -q -- "$text" "$tmp/err" || fail "$name: error '$(cat "$tmp/err")' lacks '$text'"
    [ ! -e "$tmp/$name" ] || [ -z "$(ls -A "$tmp/$name")" ] || fail "$name: left files behind"
}
expect_bad missing "nope.npy" --input "$tmp/nope.npy" --embedding "$REF/embedding.npy"
printf 'not a numpy file at all' >"$tmp/junk.npy"
expect_bad junk "junk.npy: not a .npy file" --input "$tmp/junk.npy" --embedding "$REF/embedding.npy"
head -c 100 "$REF/x.npy" >"$tmp/trunc.npy"
expect_bad truncated "trunc.npy" --input "$tmp/trunc.npy" --embedding "$REF/embedding.npy"
expect_bad wrong_dim "x.npy: vectors of dimension 16" --input "$REF/x.npy" --embedding "$REF/embedding.npy" --num-head 1
expect_bad wrong_grad "grad_x.npy\|shape" --input "$REF/x.npy" --embedding "$REF/embedding.npy" --num-head "$nh" \
    --grad-out "$REF/embedding.npy"
# NaN in the input: patch the first float of x.npy's data to a NaN
cp "$REF/x.npy" "$tmp/nan.npy"
hdr=$(( $(od -An -tu2 -j8 -N2 "$REF/x.npy" | tr -d ' ') + 10 ))
printf '\000\000\300\177' | dd of="$tmp/nan.npy" bs=1 seek="$hdr" conv=notrunc 2>/dev/null
expect_bad nan "NaN" --input "$tmp/nan.npy" --embedding "$REF/embedding.npy" --num-head "$nh"
echo "quantize CLI ok"
