#!/bin/sh
# optvq eval on the small taming model of tests/ref/model: the table and the
# JSON keys, PSNR/SSIM against tools/gen_metrics_ref.py's pyiqa values for the
# reference's own inputs, a folder of images, Fashion-MNIST (when installed)
# with the plain CNN model, and bad input (one line, exit 1).
set -u
BIN=${OPTVQ_BIN:-build/optvq}
REF=tests/ref/model/taming_small
M=$REF/hf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" eval --help >"$tmp/help" || fail "--help"
grep -q "optvq eval - " "$tmp/help" || fail "help text"
"$BIN" --help | grep -q "^  eval " || fail "eval missing from optvq --help"

# .npy input (B, C, H, W) in [-1, 1], with JSON
"$BIN" eval --model "$M" --data "$REF/x.npy" --json "$tmp/e.json" >"$tmp/out" 2>"$tmp/err" || fail "eval .npy: $(cat "$tmp/err")"
for row in "model        $M" "data         $REF/x.npy" "images       2 (3 x 16 x 16)" "assign       sinkhorn" \
    "PSNR  " "SSIM  " "codes used   " "/ 48 (" "perplexity   " "dead codes   " "quant error  " "time   "; do
    grep -q -- "$row" "$tmp/out" || fail "table lacks '$row': $(cat "$tmp/out")"
done
[ "$(wc -l <"$tmp/out")" -le 24 ] || fail "table longer than a screen"
for key in model data images channels height width assign batch_size psnr psnr_min psnr_max ssim ssim_min \
    ssim_max n_e codes_used usage perplexity dead_codes tokens quant_error seconds; do
    grep -q "\"$key\":" "$tmp/e.json" || fail "JSON lacks \"$key\": $(cat "$tmp/e.json")"
done
ls "$tmp" | grep -q "tmp" && fail "temporary JSON file left behind"
# the mean over the two images of pyiqa's values on the reference's reconstruction
# (tests/ref/metrics/taming_small.txt: 14.2633043, 14.5288038; SSIM 0.0306297, 0.0252900)
num() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\([-0-9.eE+]*\),*$/\1/p" "$tmp/e.json"; }
awk -v p="$(num psnr)" -v s="$(num ssim)" -v q="$(num quant_error)" -v u="$(num usage)" -v c="$(num codes_used)" \
    -v d="$(num dead_codes)" -v t="$(num tokens)" 'BEGIN {
    ok = (p > 14.3955 && p < 14.3966) && (s > 0.02795 && s < 0.02797) && (q > 0.1607 && q < 0.1608) &&
         (c + d == 48) && (u == c / 48) && (t == 2 * 4 * 8 * 8);
    exit ok ? 0 : 1 }' || fail "values: $(cat "$tmp/e.json")"

# a folder of images (validation preprocessing to 16 x 16), nearest assignment, --limit
mkdir "$tmp/imgs"
cp tests/ref/image/chelsea_crop.png tests/ref/image/coffee_crop.jpg tests/ref/image/camera_crop.png "$tmp/imgs/"
"$BIN" eval --model "$M" --data "$tmp/imgs" --assign nearest --batch-size 2 --threads 1 --json "$tmp/f.json" \
    >"$tmp/out" 2>"$tmp/err" || fail "eval folder: $(cat "$tmp/err")"
grep -q "images       3 (3 x 16 x 16)" "$tmp/out" || fail "folder: image count: $(cat "$tmp/out")"
grep -q "assign       nearest (batch 2)" "$tmp/out" || fail "folder: assign"
grep -q '"assign":[[:space:]]*"nearest"' "$tmp/f.json" || fail "folder: JSON assign"
"$BIN" eval --config "$REF/config.yaml" --weights "$REF/model.pth" --data "$tmp/imgs" --limit 1 >"$tmp/out" \
    2>"$tmp/err" || fail "eval --config/--weights --limit: $(cat "$tmp/err")"
grep -q "images       1 (3 x 16 x 16)" "$tmp/out" || fail "--limit 1"

# Fashion-MNIST (Debian package dataset-fashion-mnist) with the plain CNN model
if [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    P=tests/ref/model/plain
    "$BIN" eval --config "$P/config.yaml" --weights "$P/model.pth" --data fashion-mnist --limit 40 --batch-size 16 \
        --json "$tmp/fm.json" >"$tmp/out" 2>"$tmp/err" || fail "eval fashion-mnist: $(cat "$tmp/err")"
    grep -q "images       40 (1 x 32 x 32)" "$tmp/out" || fail "fashion-mnist: $(cat "$tmp/out")"
    grep -q "t10k-images-idx3-ubyte.gz" "$tmp/out" || fail "fashion-mnist: test split"
    "$BIN" eval --config "$P/config.yaml" --weights "$P/model.pth" \
        --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --limit 40 --batch-size 16 \
        --json "$tmp/fm2.json" >/dev/null 2>&1 || fail "eval IDX path"
    grep -v '"seconds"' "$tmp/fm.json" | grep -v '"data"' >"$tmp/a"
    grep -v '"seconds"' "$tmp/fm2.json" | grep -v '"data"' >"$tmp/b"
    cmp -s "$tmp/a" "$tmp/b" || fail "fashion-mnist and its IDX path differ"
else
    echo "skip: Fashion-MNIST not installed"
fi

# usage errors: exit 2
"$BIN" eval --data "$REF/x.npy" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no model: want exit 2"
"$BIN" eval --model "$M" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no data: want exit 2"
"$BIN" eval --model "$M" --data "$REF/x.npy" --assign best >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --assign: exit 2"

expect_bad() { # name, expected text, command...
    name=$1; text=$2; shift 2
    "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] || fail "$name: exit $rc, want 1 ($(cat "$tmp/err"))"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$name: error is not one line: $(cat "$tmp/err")"
    grep -q -- "$text" "$tmp/err" || fail "$name: error '$(cat "$tmp/err")' lacks '$text'"
}
expect_bad missing_data "no such file or folder" "$BIN" eval --model "$M" --data "$tmp/nothing"
mkdir "$tmp/empty"
expect_bad empty_folder "no .png/.jpg/.jpeg images" "$BIN" eval --model "$M" --data "$tmp/empty"
expect_bad wrong_shape "expected images (B, 3, H, W)" "$BIN" eval --model "$M" --data "$REF/indices.npy"
expect_bad out_of_range "must lie in \[-1, 1\]" "$BIN" eval --model "$M" --data "$REF/recon.npy"
printf 'not a png' >"$tmp/imgs/broken.png"
expect_bad broken_image "broken.png" "$BIN" eval --model "$M" --data "$tmp/imgs"
expect_bad bad_model "config" "$BIN" eval --model "$tmp/empty" --data "$REF/x.npy"
if [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    expect_bad grey_vs_rgb "grey" "$BIN" eval --model "$M" --data fashion-mnist
fi
exit 0
