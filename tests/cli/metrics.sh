#!/bin/sh
# optvq metrics A B and optvq eval --lpips/--fid-weights end to end: weights in
# the published layouts (tests/cli/metrics_fixtures.c writes them from the
# generator of tools/gen_fid_lpips_ref.py, the LPIPS heads are the committed
# legacy torch.save file), the reference photos as PNG folders; LPIPS per pair
# and FID must equal the PyTorch values in tests/ref. Then skipped metrics and
# bad input.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
BUILD=$(dirname "$BIN")
REF=tests/ref/lpips_alex
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" metrics --help | grep -q "optvq metrics A B" || fail "--help"
"$BIN" help metrics | grep -q "^EXIT STATUS" || fail "optvq help metrics"
"$BIN" --help | grep -q "^  metrics " || fail "metrics missing from optvq --help"

cc -std=c11 -Iinclude -Isrc tests/cli/metrics_fixtures.c "$BUILD/liboptvq.a" \
    ${OPTVQ_LIBS:--lopenblas -lyaml -lcjson -lpng -ljpeg -lz -lm} -lm -fopenmp ${OPTVQ_CFLAGS:-} \
    -o "$tmp/fixtures" || fail "cannot build the fixture writer"
mkdir -p "$tmp/a" "$tmp/b"
"$tmp/fixtures" "$tmp" || fail "fixtures"

# two folders, LPIPS (trunk + legacy heads) and FID, JSON
"$BIN" metrics "$tmp/a" "$tmp/b" --lpips "$tmp/alex.safetensors,$REF/alex_lin.pth" \
    --fid-weights "$tmp/inception.safetensors" --json "$tmp/m.json" >"$tmp/out" 2>"$tmp/err" ||
    fail "metrics: $(cat "$tmp/err")"
for key in psnr ssim lpips fid count pairs; do
    grep -q "\"$key\":" "$tmp/m.json" || fail "JSON lacks \"$key\": $(cat "$tmp/m.json")"
done
grep -q '"count":[[:space:]]*5' "$tmp/m.json" || fail "count: $(cat "$tmp/m.json")"
# the PyTorch values (gen_fid_lpips_ref.py): per-pair LPIPS and the FID
python_free_check() {
    # lpips.npy / fid.npy are float64 .npy files: the values start after the 128-byte header
    od -A n -t f8 -j 128 -v "$1" | tr -s ' ' '\n' | sed '/^$/d'
}
python_free_check "$REF/lpips.npy" | head -5 >"$tmp/ref_lpips"
sed -n 's/^img0[0-9].png *[-0-9.]* *[-0-9.]* *\([-0-9.e]*\)$/\1/p' "$tmp/out" >"$tmp/got_lpips"
[ "$(wc -l <"$tmp/got_lpips")" -eq 5 ] || fail "per-pair table: $(cat "$tmp/out")"
paste "$tmp/got_lpips" "$tmp/ref_lpips" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 2e-6) bad = 1 }
    END { exit bad ? 1 : 0 }' || fail "LPIPS differs from PyTorch: $(paste "$tmp/got_lpips" "$tmp/ref_lpips")"
ref_fid=$(python_free_check tests/ref/fid/fid.npy | head -1)
got_fid=$(sed -n 's/^[[:space:]]*"fid":[[:space:]]*\([-0-9.eE+]*\),*$/\1/p' "$tmp/m.json")
awk -v g="$got_fid" -v r="$ref_fid" 'BEGIN { d = (g - r) / r; if (d < 0) d = -d; exit d <= 1e-3 ? 0 : 1 }' ||
    fail "FID $got_fid vs PyTorch $ref_fid"

# eval on a small model: LPIPS and rFID of its reconstructions equal the PyTorch
# pipeline's on PyTorch's reconstruction of the same input (tests/ref/fid/eval_plain_vqbase.npy)
P=tests/ref/model/plain_vqbase
"$BIN" eval --config $P/config.yaml --weights $P/model.pth --data $P/x.npy \
    --lpips "$tmp/alex.safetensors,$REF/alex_lin.pth" --fid-weights "$tmp/inception.safetensors" \
    --json "$tmp/pv.json" >"$tmp/out" 2>"$tmp/err" || fail "eval plain_vqbase: $(cat "$tmp/err")"
set -- $(python_free_check tests/ref/fid/eval_plain_vqbase.npy)
got_l=$(sed -n 's/^[[:space:]]*"lpips":[[:space:]]*\([-0-9.eE+]*\),*$/\1/p' "$tmp/pv.json")
got_f=$(sed -n 's/^[[:space:]]*"fid":[[:space:]]*\([-0-9.eE+]*\),*$/\1/p' "$tmp/pv.json")
awk -v gl="$got_l" -v rl="$1" -v gf="$got_f" -v rf="$2" 'BEGIN { dl = gl - rl; df = (gf - rf) / rf;
    if (dl < 0) dl = -dl; if (df < 0) df = -df; exit (dl <= 1e-5 && df <= 1e-3) ? 0 : 1 }' ||
    fail "eval LPIPS $got_l / rFID $got_f vs PyTorch $1 / $2"

# one pair of files: FID needs two images per set; no weights: skipped with reasons
"$BIN" metrics "$tmp/a/img00.png" "$tmp/b/img00.png" --json "$tmp/one.json" >"$tmp/out" 2>"$tmp/err" ||
    fail "one pair: $(cat "$tmp/err")"
grep -q "LPIPS  skipped: no --lpips weights given" "$tmp/out" || fail "LPIPS skip reason: $(cat "$tmp/out")"
grep -q "FID    skipped: no --fid-weights given" "$tmp/out" || fail "FID skip reason: $(cat "$tmp/out")"
grep -q '"lpips":[[:space:]]*null' "$tmp/one.json" || fail "skipped LPIPS is not null: $(cat "$tmp/one.json")"
"$BIN" metrics "$tmp/a/img00.png" "$tmp/b/img00.png" --fid-weights "$tmp/inception.safetensors" >"$tmp/out" ||
    fail "one pair with FID weights"
grep -q "FID    skipped: 1 image(s); FID needs at least 2 per set" "$tmp/out" || fail "FID reason: $(cat "$tmp/out")"

# eval with both metrics: the CIFAR-10 config (3 x 32 x 32) with random weights
"$BIN" eval --config configs/cifar10/optvq.yaml --init-random 1 --data "$tmp/a" \
    --lpips "$tmp/alex.safetensors,$REF/alex_lin.pth" --fid-weights "$tmp/inception.safetensors" \
    --json "$tmp/e.json" >"$tmp/out" 2>"$tmp/err" || fail "eval: $(cat "$tmp/err")"
grep -q "LPIPS        0\.[0-9]" "$tmp/out" || fail "eval LPIPS: $(cat "$tmp/out")"
grep -q "rFID         [0-9]" "$tmp/out" || fail "eval rFID: $(cat "$tmp/out")"
grep -q '"lpips":[[:space:]]*0\.' "$tmp/e.json" || fail "eval JSON lpips: $(cat "$tmp/e.json")"
grep -q '"fid":[[:space:]]*[0-9]' "$tmp/e.json" || fail "eval JSON fid: $(cat "$tmp/e.json")"
"$BIN" eval --config configs/cifar10/optvq.yaml --init-random 1 --data "$tmp/a" >"$tmp/out" 2>"$tmp/err" ||
    fail "eval without metric weights: $(cat "$tmp/err")"
grep -q "LPIPS        skipped: no --lpips weights given" "$tmp/out" || fail "eval skip reason: $(cat "$tmp/out")"

# bad input: one line, exit 1 / 2
"$BIN" metrics "$tmp/a" >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] || fail "one argument: exit 2"
"$BIN" metrics "$tmp/a" "$tmp/b" --lpips "$tmp/inception.safetensors" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "lin0.model.1.weight" "$tmp/err" ||
    fail "wrong LPIPS weights: $(cat "$tmp/err")"
rm "$tmp/b/img03.png"
"$BIN" metrics "$tmp/a" "$tmp/b" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "img03.png has no partner" "$tmp/err" || fail "unpaired: $(cat "$tmp/err")"
echo "metrics ok"
