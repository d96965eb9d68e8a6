#!/bin/sh
# optvq info / encode / decode / reconstruct / convert on the small taming
# model of tests/ref/model: decode(encode(x)) == reconstruct(x) byte for byte,
# both model forms, and bad input (one line, exit 1, no output left behind).
set -u
BIN=${OPTVQ_BIN:-build/optvq}
REF=tests/ref/model/taming_small
M=$REF/hf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" info --model "$M" >"$tmp/info" || fail "info"
grep -q "tokens       8 x 8 x 4 heads = 256 per image" "$tmp/info" || fail "info: token grid: $(cat "$tmp/info")"
grep -q "parameters   247847 total" "$tmp/info" || fail "info: parameter count"
"$BIN" info --config "$REF/config.yaml" --weights "$REF/model.pth" >"$tmp/info2" || fail "info with .pth"
cmp -s "$tmp/info" "$tmp/info2" || fail "info differs between the HF folder and config + .pth"

# encode -> decode == reconstruct, on the reference's input images (.npy) and on image files
"$BIN" encode --model "$M" --input "$REF/x.npy" --out "$tmp/tok.npy" 2>/dev/null || fail "encode"
cmp -s "$tmp/tok.npy" "$REF/indices.npy" || fail "encode tokens differ from the reference"
"$BIN" decode --model "$M" --input "$tmp/tok.npy" --out "$tmp/dec.npy" || fail "decode"
"$BIN" reconstruct --model "$M" --input "$REF/x.npy" --out "$tmp/rec.npy" --save-indices "$tmp/tok2.npy" 2>/dev/null \
    || fail "reconstruct"
cmp -s "$tmp/dec.npy" "$tmp/rec.npy" || fail "decode(encode(x)) != reconstruct(x)"
cmp -s "$tmp/tok.npy" "$tmp/tok2.npy" || fail "tokens of encode and reconstruct differ"
mkdir "$tmp/imgs"
cp tests/ref/image/chelsea_crop.png tests/ref/image/coffee_crop.jpg "$tmp/imgs/"
"$BIN" reconstruct --model "$M" --input "$tmp/imgs" --out "$tmp/recdir/" --assign nearest 2>/dev/null || fail "folder"
[ -s "$tmp/recdir/chelsea_crop.png" ] && [ -s "$tmp/recdir/coffee_crop.png" ] || fail "folder outputs"
"$BIN" reconstruct --model "$M" --input "$tmp/imgs/chelsea_crop.png" --out "$tmp/one.png" 2>/dev/null || fail "one image"
head -c 8 "$tmp/one.png" | od -An -c | grep -q "P   N   G" || fail "one.png is not a PNG"

# convert .pth -> safetensors, then load it with the YAML config
"$BIN" convert "$REF/model.pth" "$tmp/w.safetensors" >/dev/null || fail "convert"
"$BIN" encode --config "$REF/config.yaml" --weights "$tmp/w.safetensors" --input "$REF/x.npy" --out "$tmp/tok3.npy" \
    2>/dev/null || fail "encode with converted weights"
cmp -s "$tmp/tok.npy" "$tmp/tok3.npy" || fail "converted weights give other tokens"

# usage errors
"$BIN" encode --input x --out y >/dev/null 2>&1; [ $? -eq 2 ] || fail "no model: want exit 2"
"$BIN" encode --model "$M" --config c --input x --out y >/dev/null 2>&1; [ $? -eq 2 ] || fail "two models: exit 2"

expect_bad() { # name, expected text, output path, command...
    name=$1; text=$2; out=$3; shift 3
    "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] || fail "$name: exit $rc, want 1 ($(cat "$tmp/err"))"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$name: error is not one line: $(cat "$tmp/err")"
    grep -q -- "$text" "$tmp/err" || fail "$name: error '$(cat "$tmp/err")' lacks '$text'"
    [ ! -e "$out" ] || fail "$name: left $out behind"
}
mkdir "$tmp/bad"
cp "$M/config.json" "$tmp/bad/config.json"
head -c 5000 "$M/model.safetensors" >"$tmp/bad/model.safetensors"
expect_bad truncated_weights "model.safetensors" "$tmp/o1.npy" \
    "$BIN" encode --model "$tmp/bad" --input "$REF/x.npy" --out "$tmp/o1.npy"
sed 's/diffusion.Encoder/diffusion.FancyEncoder/' "$REF/config.yaml" >"$tmp/unknown.yaml"
expect_bad unknown_target "unknown encoder target 'optvq.models.backbone.diffusion.FancyEncoder'" "$tmp/o2.npy" \
    "$BIN" encode --config "$tmp/unknown.yaml" --weights "$REF/model.pth" --input "$REF/x.npy" --out "$tmp/o2.npy"
expect_bad wrong_shape "expected images" "$tmp/o3.npy" \
    "$BIN" encode --model "$M" --input "$REF/z.npy" --out "$tmp/o3.npy"
head -c 300 tests/ref/image/chelsea_crop.png >"$tmp/broken.png"
expect_bad corrupt_image "broken.png" "$tmp/o4.npy" \
    "$BIN" encode --model "$M" --input "$tmp/broken.png" --out "$tmp/o4.npy"
cp "$tmp/tok.npy" "$tmp/badtok.npy"
hdr=$(( $(od -An -tu2 -j8 -N2 "$tmp/tok.npy" | tr -d ' ') + 10 ))
printf '\377\377\000\000\000\000\000\000' | dd of="$tmp/badtok.npy" bs=1 seek="$hdr" conv=notrunc 2>/dev/null
expect_bad bad_tokens "outside" "$tmp/o5.npy" \
    "$BIN" decode --model "$M" --input "$tmp/badtok.npy" --out "$tmp/o5.npy"
expect_bad float_tokens "integer" "$tmp/o8.npy" \
    "$BIN" decode --model "$M" --input "$REF/tie_margin.npy" --out "$tmp/o8.npy"
head -c 2000 "$REF/model.pth" >"$tmp/trunc.pth"
expect_bad truncated_pth "trunc.pth" "$tmp/o6.npy" \
    "$BIN" encode --config "$REF/config.yaml" --weights "$tmp/trunc.pth" --input "$REF/x.npy" --out "$tmp/o6.npy"
expect_bad missing_model "nope" "$tmp/o7.npy" \
    "$BIN" encode --model "$tmp/nope" --input "$REF/x.npy" --out "$tmp/o7.npy"

# --precision: the small model's layers are under the bf16 threshold, so its
# outputs stay fp32's; the f16 h4 architecture (random weights, 64x64) takes
# the bf16 path: tokens equal fp32's, the reconstruction close but not equal,
# decode(encode(x)) == reconstruct(x) in bf16 too; bad values are usage errors
"$BIN" reconstruct --model "$M" --input "$REF/x.npy" --out "$tmp/rec16.npy" --precision bf16 2>/dev/null \
    || fail "reconstruct --precision bf16"
cmp -s "$tmp/rec.npy" "$tmp/rec16.npy" || fail "small model: bf16 changed outputs under the threshold"
"$BIN" reconstruct --model "$M" --input "$REF/x.npy" --out "$tmp/x.npy" --precision bf17 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "precision must be one of fp32|bf16|bf16-all" "$tmp/err" || fail "bad --precision: $(cat "$tmp/err")"
[ ! -e "$tmp/x.npy" ] || fail "bad --precision left an output"
F16="--config configs/imagenet/optvq_256_f16_h4.yaml --init-random 3"
"$BIN" reconstruct $F16 --input tests/ref/image/chelsea_crop.png --out "$tmp/r32.npy" --save-indices "$tmp/t32.npy" \
    --assign nearest 2>/dev/null || fail "f16 fp32 reconstruct"
"$BIN" reconstruct $F16 --input tests/ref/image/chelsea_crop.png --out "$tmp/r16.npy" --save-indices "$tmp/t16.npy" \
    --assign nearest --precision bf16 2>/dev/null || fail "f16 bf16 reconstruct"
cmp -s "$tmp/t32.npy" "$tmp/t16.npy" || fail "f16: bf16 tokens differ from fp32's"
cmp -s "$tmp/r32.npy" "$tmp/r16.npy" && fail "f16: bf16 reconstruction equals fp32's (path not taken?)"
"$BIN" decode $F16 --input "$tmp/t16.npy" --out "$tmp/d16.npy" --precision bf16 || fail "f16 bf16 decode"
cmp -s "$tmp/d16.npy" "$tmp/r16.npy" || fail "f16 bf16: decode(encode(x)) != reconstruct(x)"
"$BIN" eval --model "$M" --data "$REF/x.npy" --precision bf16 --json "$tmp/e.json" >/dev/null 2>&1 || fail "eval --precision"
grep -q '"precision":[[:space:]]*"bf16"' "$tmp/e.json" || fail "eval json lacks the precision"
echo "model CLI ok"
