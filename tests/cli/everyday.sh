#!/bin/sh
# Everyday use of the model commands: the output rule (the name says what is
# written), one line naming each output, all outputs or none, streamed folders
# with --keep-going, and clear one-line messages for inputs that used to be
# misreported or silently accepted.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
M=tests/ref/model/taming_small/hf
P="--config tests/ref/model/plain/config.yaml --weights tests/ref/model/plain/model.pth"
F=tests/ref/cli
IMG=tests/ref/image/chelsea_crop.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# run NAME WANT_EXIT command...: stdout to $tmp/out, stderr to $tmp/err
run() {
    name=$1; want=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq "$want" ] || fail "$name: exit $rc, want $want (stderr: $(cat "$tmp/err"))"
}
err_has() { grep -q -- "$2" "$tmp/err" || fail "$1: stderr '$(cat "$tmp/err")' lacks '$2'"; }
out_has() { grep -q -- "$2" "$tmp/out" || fail "$1: stdout '$(cat "$tmp/out")' lacks '$2'"; }
one_line() { [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1: error is not one line: $(cat "$tmp/err")"; }

# ---- the output rule ----
run jpeg 0 "$BIN" reconstruct --model "$M" --input "$IMG" --out "$tmp/e6.jpg"
[ -f "$tmp/e6.jpg" ] || fail "jpeg: e6.jpg is not a file"
head -c 3 "$tmp/e6.jpg" | od -An -tx1 | grep -q "ff d8 ff" || fail "jpeg: e6.jpg is not a JPEG"
out_has jpeg "wrote the reconstruction (16x16) to $tmp/e6.jpg"
run tokens_as_png 2 "$BIN" encode --model "$M" --input "$IMG" --out "$tmp/tok.png"
one_line tokens_as_png; err_has tokens_as_png "must be a .npy file or a folder"
[ ! -e "$tmp/tok.png" ] || fail "tokens_as_png: wrote tok.png"
run unclear_name 2 "$BIN" reconstruct --model "$M" --input "$IMG" --out "$tmp/e9"
one_line unclear_name; err_has unclear_name "say what to write"
[ ! -e "$tmp/e9" ] || fail "unclear_name: created e9"
run encode_folder 0 "$BIN" encode --model "$M" --input tests/ref/image/chelsea_crop.png --out "$tmp/tokdir/"
[ -f "$tmp/tokdir/chelsea_crop.npy" ] || fail "encode_folder: no tokdir/chelsea_crop.npy"
out_has encode_folder "wrote 1 token arrays to $tmp/tokdir/"
mkdir "$tmp/existing"
run existing_folder 0 "$BIN" reconstruct --model "$M" --input "$IMG" --out "$tmp/existing"
[ -f "$tmp/existing/chelsea_crop.png" ] || fail "existing_folder: no image in the folder"
run two_in_one_png 2 "$BIN" decode --model "$M" --input tests/ref/model/taming_small/indices.npy --out "$tmp/two.png"
err_has two_in_one_png "2 images do not fit one image file"
run decode_line 0 "$BIN" decode --model "$M" --input tests/ref/model/taming_small/indices.npy --out "$tmp/dec.npy"
out_has decode_line "optvq decode: wrote images float32 (2, 3, 16, 16) to $tmp/dec.npy"
run decode_folder 0 "$BIN" decode --model "$M" --input tests/ref/model/taming_small/indices.npy --out "$tmp/decdir/"
[ -f "$tmp/decdir/000000.png" ] && [ -f "$tmp/decdir/000001.png" ] || fail "decode_folder: images missing"
run nested_parents 0 "$BIN" encode --model "$M" --input "$IMG" --out "$tmp/a/b/c/t.npy"
[ -f "$tmp/a/b/c/t.npy" ] || fail "nested_parents: missing folders were not created"

# folder outputs of the other commands follow the same rule: missing parents are created
run toy_nested 0 "$BIN" toy --steps 2 --frames-every 1 --out "$tmp/t1/t2/toy"
[ -f "$tmp/t1/t2/toy/toy.png" ] || fail "toy_nested: no toy.png"
run train_nested 0 "$BIN" train --config tests/ref/train/config.yaml --data fashion-mnist --limit 16 --epochs 1 \
    --batch-size 16 --val-limit 16 --out "$tmp/r1/r2/run"
[ -f "$tmp/r1/r2/run/model.safetensors" ] || fail "train_nested: no model"

# ---- all outputs or none ----
touch "$tmp/afile"
run all_or_none 1 "$BIN" reconstruct --model "$M" --input "$IMG" --out "$tmp/hw.png" --save-indices "$tmp/afile/i.npy"
one_line all_or_none; err_has all_or_none "afile"
[ ! -e "$tmp/hw.png" ] || fail "all_or_none: hw.png left behind"

# ---- folders stream; one bad file stops the run, or is skipped with --keep-going ----
mkdir "$tmp/imgs"
cp tests/ref/image/chelsea_crop.png "$tmp/imgs/a.png"
head -c 300 tests/ref/image/chelsea_crop.png >"$tmp/imgs/b.png"
cp tests/ref/image/coffee_crop.jpg "$tmp/imgs/c.jpg"
run bad_in_folder 1 "$BIN" reconstruct --model "$M" --input "$tmp/imgs" --out "$tmp/r1/" --batch-size 1
one_line bad_in_folder; err_has bad_in_folder "b.png"
[ -f "$tmp/r1/a.png" ] || fail "bad_in_folder: the image before the bad one was not written as it went"
[ ! -e "$tmp/r1/c.png" ] || fail "bad_in_folder: went on after the bad file"
run keep_going 1 "$BIN" reconstruct --model "$M" --input "$tmp/imgs" --out "$tmp/r2/" --keep-going
err_has keep_going "skipping: $tmp/imgs/b.png"; err_has keep_going "skipped 1 of 3 inputs"
[ -f "$tmp/r2/a.png" ] && [ -f "$tmp/r2/c.png" ] && [ ! -e "$tmp/r2/b.png" ] || fail "keep_going: outputs"
run keep_going_npy 1 "$BIN" encode --model "$M" --input "$tmp/imgs" --out "$tmp/k.npy" --keep-going
out_has keep_going_npy "wrote tokens int64 (2, 4, 8, 8)"

# ---- messages ----
run wide_png 1 "$BIN" encode --model "$M" --input tests/ref/cli/wide_40000x8.png --out "$tmp/w.npy"
one_line wide_png; err_has wide_png "image size 40000x8 exceeds the limit"
run missing_model 1 "$BIN" info --model "$tmp/nope"
one_line missing_model; err_has missing_model "nope: No such file or directory"
run config_folder 1 "$BIN" info --config "$tmp" --init-random 1
one_line config_folder; err_has config_folder "is a folder, not a config file"
run empty_batch 1 "$BIN" encode $P --input "$F/empty.npy" --out "$tmp/o.npy"
one_line empty_batch; err_has empty_batch "empty.npy: holds no images (shape (0, 1, 32, 32))"
run wrong_channels 1 "$BIN" encode --model "$M" --input "$F/u8.npy" --out "$tmp/o.npy"
err_has wrong_channels "expected images (B, 3, H, W) for this 3-channel model, got shape (2, 1, 32, 32)"
run odd_size 1 "$BIN" encode $P --input "$F/odd.npy" --out "$tmp/o.npy"
one_line odd_size; err_has odd_size "odd.npy: images of 30x30 do not fit the model"
run int_images 1 "$BIN" encode $P --input "$F/i32.npy" --out "$tmp/o.npy"
one_line int_images; err_has int_images "i32.npy: an int32 array is not images"
[ ! -e "$tmp/o.npy" ] || fail "a refused input left o.npy behind"
run uint8_images 0 "$BIN" encode $P --input "$F/u8.npy" --out "$tmp/u8tok.npy"
err_has uint8_images "uint8 images mapped to \[-1, 1\]"
run range_warning 0 "$BIN" encode $P --input "$F/wide_range.npy" --out "$tmp/wr.npy"
err_has range_warning "warning: $F/wide_range.npy: values span \[-2.9.*\]; images must lie in \[-1, 1\]"
run rgb_to_grey 0 "$BIN" encode $P --input "$IMG" --out "$tmp/g.npy"
err_has rgb_to_grey "is colour; turned to grey"
# quantize: the features are named when their dimension differs; bad settings are usage errors
run q_dim 1 "$BIN" quantize --input "$F/feat7.npy" --embedding "$F/codes8.npy" --out "$tmp/q1"
one_line q_dim; err_has q_dim "feat7.npy: vectors of dimension 7"
run q_int 1 "$BIN" quantize --input "$F/feat_i32.npy" --embedding "$F/codes8.npy" --out "$tmp/q2"
one_line q_int; err_has q_int "feat_i32.npy: an integer array"
run q_beta 2 "$BIN" quantize --input "$F/feat7.npy" --embedding "$F/codes8.npy" --out "$tmp/q3" --beta -1
run q_iters 2 "$BIN" quantize --input "$F/feat7.npy" --embedding "$F/codes8.npy" --out "$tmp/q4" --n-iters 0
run q_out_file 2 "$BIN" quantize --input "$F/feat7.npy" --embedding "$F/codes8.npy" --out "$tmp/q.npy"
# info takes no run options
run info_assign 2 "$BIN" info --model "$M" --assign nearest
# every command's help: one style, with examples and the exit status; 'optvq help CMD' prints it
for c in encode decode reconstruct info eval metrics train quantize convert toy demo serve; do
    "$BIN" "$c" --help >"$tmp/h1" 2>&1 || fail "$c --help exits non-zero"
    "$BIN" help "$c" >"$tmp/h2" 2>&1 || fail "optvq help $c exits non-zero"
    cmp -s "$tmp/h1" "$tmp/h2" || fail "optvq help $c differs from $c --help"
    for s in NAME SYNOPSIS OPTIONS EXAMPLES "EXIT STATUS"; do
        grep -q "^$s" "$tmp/h1" || fail "$c --help has no $s section"
    done
done
# docs cite only files in this repository: no outside design notes (the name is built so this line does not cite it)
outside="design"".md"
! grep -rl "$outside" src include README.md docs 2>/dev/null | grep -q . || fail "a file cites $outside, not in the repo"
echo "everyday ok"
