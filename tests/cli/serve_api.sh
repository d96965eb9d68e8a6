#!/bin/sh
# optvq serve, through its JSON API with curl: every endpoint on the shipped
# models (the answer agrees with 'optvq reconstruct' and 'optvq eval' on the
# same file), then hostile requests -- a truncated multipart body, a 200 MB
# body, a file that is no image, a PNG header claiming 40000x40000, wrong
# content types and methods, a foreign Host/Origin, 100 uploads at once --
# each answered 4xx/503 while the server stays up, its memory bounded, and
# the next good request succeeds; SIGTERM stops it cleanly.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
pid=
pid2=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$pid2" ] && kill "$pid2" 2>/dev/null && wait "$pid2" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
command -v curl >/dev/null 2>&1 || { echo "FAIL: curl is missing (make deps installs it)"; exit 1; }
EX=src/serve/web/examples/0-boot.png
[ -f "$EX" ] || { echo "FAIL: $EX is missing"; exit 1; }

# --- the server, on a free port, with its shipped models -----------------------
"$BIN" serve --port 0 --threads 2 --queue 4 --max-upload 4 >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "FAIL: the server did not start"; cat "$tmp/out" "$tmp/err"; exit 1
fi
U=http://127.0.0.1:$port
grep -q "model fashion-mnist-optvq" "$tmp/out" || fail "the shipped OptVQ model is not served"
grep -q "model fashion-mnist-vqbase" "$tmp/out" || fail "the shipped vanilla VQ model is not served"

# status [curl args...]: the HTTP status of one request; the body in $tmp/body
status() { curl -s -o "$tmp/body" -w '%{http_code}' "$@"; }
# expect CODE WHAT [curl args...]: the status, and a JSON {"error": ...} for an error
expect() {
    code=$1 what=$2
    shift 2
    got=$(status "$@")
    if [ "$got" != "$code" ]; then
        fail "$what: HTTP $got, expected $code ($(head -c 200 "$tmp/body"))"
    elif [ "$code" -ge 400 ] && ! grep -q '^{"error":"[^"]*"}$' "$tmp/body"; then
        fail "$what: the $code answer is not a one-line JSON error: $(head -c 200 "$tmp/body")"
    fi
}
alive() { kill -0 "$pid" 2>/dev/null || { echo "FAIL: the server died ($1)"; cat "$tmp/err"; exit 1; }; }
# a JSON member of $tmp/body (numbers and strings), via python3 when present, else sed
jget() { sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[-0-9.e+]*\).*/\1/p" "$tmp/body" | tr -d '"'; }

# --- every endpoint -------------------------------------------------------------
expect 200 "GET /" "$U/"
grep -q '<script src="/app.js"' "$tmp/body" || fail "the page does not load app.js"
expect 200 "GET /app.js" "$U/app.js"
expect 200 "GET /style.css" "$U/style.css"
expect 200 "GET /favicon.svg" "$U/favicon.svg"
expect 200 "GET an example" "$U/examples/0-boot.png"
cmp -s "$tmp/body" "$EX" || fail "the example served differs from $EX"
expect 200 "GET /api/models" "$U/api/models"
grep -q '"name":"fashion-mnist-optvq"' "$tmp/body" || fail "/api/models does not list fashion-mnist-optvq"
grep -q '"name":"fashion-mnist-vqbase"' "$tmp/body" || fail "/api/models does not list fashion-mnist-vqbase"
expect 200 "HEAD /" -I "$U/"

expect 200 "POST /api/reconstruct" -F "image=@$EX" "$U/api/reconstruct"
cp "$tmp/body" "$tmp/recon.json"
for k in reconstruction tokens psnr ssim seconds original error_map codes_used; do
    grep -q "\"$k\":" "$tmp/recon.json" || fail "/api/reconstruct answer has no $k"
done
# the same file through the CLI: tokens, PSNR, SSIM and the PNG agree
"$BIN" reconstruct --model models/fashion-mnist-optvq --input "$EX" --out "$tmp/rec.png" \
    --save-indices "$tmp/tok.npy" --threads 2 >/dev/null 2>&1 || fail "optvq reconstruct failed"
"$BIN" eval --model models/fashion-mnist-optvq --data "$EX" --json "$tmp/eval.json" --threads 2 >/dev/null 2>&1 ||
    fail "optvq eval failed"
if command -v /usr/bin/python3 >/dev/null 2>&1; then
    /usr/bin/python3 - "$tmp" <<'PY' || fail "/api/reconstruct disagrees with optvq reconstruct/eval"
import base64, json, struct, sys
tmp = sys.argv[1]
d = json.load(open(tmp + "/recon.json"))
e = json.load(open(tmp + "/eval.json"))
raw = open(tmp + "/tok.npy", "rb").read()
hl = struct.unpack("<H", raw[8:10])[0]
tok = list(struct.unpack("<%dq" % ((len(raw) - 10 - hl) // 8), raw[10 + hl:]))
served = [t for head in d["tokens"] for row in head for t in row]
ok = True
if served != tok:
    print("tokens differ"); ok = False
if d["psnr"] != e["psnr"] or d["ssim"] != e["ssim"]:
    print("psnr/ssim", d["psnr"], d["ssim"], "eval", e["psnr"], e["ssim"]); ok = False
if base64.b64decode(d["reconstruction"]) != open(tmp + "/rec.png", "rb").read():
    print("the reconstruction PNG differs from optvq reconstruct's"); ok = False
sys.exit(0 if ok else 1)
PY
fi
tok_sinkhorn=$(sed 's/.*"tokens":\(.*\),"codes_used".*/\1/' "$tmp/recon.json")
expect 200 "reconstruct, nearest" -F "image=@$EX" -F assign=nearest -F model=fashion-mnist-optvq "$U/api/reconstruct"
[ "$(jget assign)" = nearest ] || fail "assign=nearest is not reported back"
tok_nearest=$(sed 's/.*"tokens":\(.*\),"codes_used".*/\1/' "$tmp/body")
[ "$tok_sinkhorn" != "$tok_nearest" ] || fail "nearest gives the same tokens as Sinkhorn"
expect 200 "reconstruct, Sinkhorn settings" -F "image=@$EX" -F epsilon=2.5 -F n_iters=3 -F normalize=dim \
    "$U/api/reconstruct"
[ "$(jget epsilon)" = 2.5 ] && [ "$(jget n_iters)" = 3 ] && [ "$(jget normalize)" = dim ] ||
    fail "epsilon/n_iters/normalize are not applied: $(head -c 200 "$tmp/body")"
expect 200 "reconstruct with the vanilla VQ model" -F "image=@$EX" -F model=fashion-mnist-vqbase "$U/api/reconstruct"
[ "$(jget model)" = fashion-mnist-vqbase ] || fail "model=fashion-mnist-vqbase not used"
expect 200 "POST /api/toy" -H 'Content-Type: application/json' -d '{"steps": 100, "seed": 3, "frames": 10}' \
    "$U/api/toy"
grep -q '"frames":\[' "$tmp/body" && grep -q '"optvq":{"used":' "$tmp/body" || fail "/api/toy answer lacks frames"
expect 200 "POST /api/toy, empty object" -H 'Content-Type: application/json' -d '{}' "$U/api/toy"

# --- bad requests ---------------------------------------------------------------
expect 400 "unknown model" -F "image=@$EX" -F model=../../etc "$U/api/reconstruct"
expect 400 "bad assign" -F "image=@$EX" -F assign=greedy "$U/api/reconstruct"
expect 400 "epsilon out of range" -F "image=@$EX" -F epsilon=-1 "$U/api/reconstruct"
expect 400 "n_iters not a number" -F "image=@$EX" -F n_iters=lots "$U/api/reconstruct"
expect 400 "no image field" -F "picture=@$EX" "$U/api/reconstruct"
expect 400 "toy: points out of range" -H 'Content-Type: application/json' -d '{"points": 100000}' "$U/api/toy"
expect 400 "toy: not JSON" -H 'Content-Type: application/json' -d 'points=5' "$U/api/toy"
expect 404 "unknown endpoint" "$U/api/nothing"
expect 404 "GET /api/../../etc/passwd" --path-as-is "$U/../../etc/passwd"
expect 405 "GET /api/reconstruct" "$U/api/reconstruct"
expect 405 "DELETE /api/models" -X DELETE "$U/api/models"
expect 403 "a foreign Host (DNS rebinding)" -H 'Host: evil.example:80' "$U/api/models"
expect 403 "a foreign Origin" -H 'Origin: http://evil.example' -F "image=@$EX" "$U/api/reconstruct"

# --- hostile requests -------------------------------------------------------------
# a truncated multipart body
printf -- '--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n' >"$tmp/trunc"
head -c 200 "$EX" >>"$tmp/trunc"
expect 400 "truncated multipart" -H 'Content-Type: multipart/form-data; boundary=XyZ' --data-binary "@$tmp/trunc" \
    "$U/api/reconstruct"
# a multipart body that ends right after a boundary, and one that is empty
expect 400 "multipart cut after a boundary" -H 'Content-Type: multipart/form-data; boundary=XyZ' \
    --data-binary '--XyZ' "$U/api/reconstruct"
# a 200 MB body (refused from its Content-Length, before it is read)
truncate -s 200M "$tmp/big"
expect 413 "200 MB body" -H 'Content-Type: multipart/form-data; boundary=XyZ' --data-binary "@$tmp/big" \
    "$U/api/reconstruct"
rm -f "$tmp/big"
# not an image
printf 'hello, this is text\n' >"$tmp/text.png"
expect 415 "a text file as image" -F "image=@$tmp/text.png" "$U/api/reconstruct"
# a PNG header claiming 40000 x 40000 pixels (refused before decoding)
printf '\211PNG\r\n\032\n\000\000\000\015IHDR\000\000\234\100\000\000\234\100\010\000\000\000\000' >"$tmp/huge.png"
head -c 4000 /dev/zero >>"$tmp/huge.png"
expect 413 "40000x40000 PNG header" -F "image=@$tmp/huge.png" "$U/api/reconstruct"
# a corrupt PNG of a sane size
head -c 100 "$EX" >"$tmp/cut.png"
expect 400 "a cut PNG" -F "image=@$tmp/cut.png" "$U/api/reconstruct"
# wrong content types
expect 415 "reconstruct as JSON" -H 'Content-Type: application/json' -d '{}' "$U/api/reconstruct"
expect 415 "reconstruct without a boundary" -H 'Content-Type: multipart/form-data' -d 'x' "$U/api/reconstruct"
expect 415 "toy as form" -F steps=10 "$U/api/toy"
alive "after the hostile requests"

# 100 uploads at once: each is answered 200 or 503 (--queue 4), nothing else
mkdir "$tmp/many"
i=0
while [ $i -lt 100 ]; do
    curl -s -o /dev/null -w '%{http_code}\n' -F "image=@$EX" "$U/api/reconstruct" >"$tmp/many/$i" 2>&1 &
    i=$((i + 1))
done
wait_for_curls() { # wait for the curls only, not the server
    for _ in $(seq 1 600); do
        [ "$(cat "$tmp"/many/* 2>/dev/null | grep -c .)" -ge 100 ] && return 0
        sleep 0.1
    done
    return 1
}
wait_for_curls || fail "100 concurrent uploads did not all finish in 60 s"
ok=$(cat "$tmp"/many/* | grep -c '^200$')
busy=$(cat "$tmp"/many/* | grep -c '^503$')
[ $((ok + busy)) -eq 100 ] || fail "100 concurrent uploads: $ok 200s, $busy 503s, others: $(cat "$tmp"/many/* | grep -v '^200$' | grep -v '^503$' | sort | uniq -c | tr '\n' ' ')"
[ "$ok" -ge 1 ] || fail "100 concurrent uploads: none succeeded"
alive "after 100 concurrent uploads"
rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
[ -n "$rss" ] && [ "$rss" -lt 1048576 ] || fail "server RSS ${rss:-?} kB after the hostile requests (bound: 1 GiB)"
# and the next good request is served as the first
expect 200 "a good request after all that" -F "image=@$EX" "$U/api/reconstruct"
tr -d '\n' <"$tmp/body" | sed 's/"seconds":[^,]*,//' >"$tmp/again"
tr -d '\n' <"$tmp/recon.json" | sed 's/"seconds":[^,]*,//' >"$tmp/first"
cmp -s "$tmp/again" "$tmp/first" || fail "the same upload gave another answer after the hostile requests"

# --- usage errors and a clean stop ----------------------------------------------------
"$BIN" serve --port 70000 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--port 70000 is not a usage error"
"$BIN" serve --queue 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--queue 0 is not a usage error"
"$BIN" serve --model "$tmp/nothing" --port 0 >/dev/null 2>"$tmp/err2"; [ $? -eq 1 ] ||
    fail "a missing --model folder does not exit 1"
"$BIN" serve --port "$port" >/dev/null 2>"$tmp/err3"; [ $? -eq 1 ] || fail "a port in use does not exit 1"
grep -q "cannot listen" "$tmp/err3" || fail "a port in use is not reported: $(cat "$tmp/err3")"
"$BIN" serve --help | grep -q '^EXIT STATUS' || fail "serve --help has no EXIT STATUS section"

# --lpips: LPIPS in the answer, as optvq eval computes it (the random AlexNet
# and committed heads of tests/cli/metrics.sh)
BUILD=$(dirname "$BIN")
if cc -std=c11 -Iinclude -Isrc tests/cli/metrics_fixtures.c "$BUILD/liboptvq.a" \
    ${OPTVQ_LIBS:--lopenblas -lyaml -lcjson -lpng -ljpeg -lz -lm} -lm -fopenmp ${OPTVQ_CFLAGS:-} \
    -o "$tmp/fixtures" && mkdir -p "$tmp/a" "$tmp/b" && "$tmp/fixtures" "$tmp" >/dev/null; then
    L="$tmp/alex.safetensors,tests/ref/lpips_alex/alex_lin.pth"
    "$BIN" serve --port 0 --threads 2 --lpips "$L" >"$tmp/out2" 2>"$tmp/err2" &
    pid2=$!
    port2=
    for _ in $(seq 1 100); do
        port2=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/out2")
        [ -n "$port2" ] && break
        kill -0 "$pid2" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port2" ]; then
        fail "the server with --lpips did not start: $(cat "$tmp/err2")"
    else
        expect 200 "reconstruct with --lpips" -F "image=@$EX" "http://127.0.0.1:$port2/api/reconstruct"
        "$BIN" eval --model models/fashion-mnist-optvq --data "$EX" --lpips "$L" --json "$tmp/eval2.json" \
            --threads 2 >/dev/null 2>&1 || fail "optvq eval --lpips failed"
        got=$(jget lpips)
        want=$(sed -n 's/.*"lpips":[[:space:]]*\([-0-9.e+]*\),.*/\1/p' "$tmp/eval2.json" | head -1)
        [ -n "$got" ] && [ "$got" = "$want" ] || fail "LPIPS $got, optvq eval --lpips says $want"
    fi
    kill "$pid2" 2>/dev/null; wait "$pid2" 2>/dev/null; pid2=
else
    fail "cannot build the LPIPS fixtures of tests/cli/metrics.sh"
fi

kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    fail "the server did not stop within 10 s of SIGTERM"
else
    wait "$pid"; rc=$?
    [ "$rc" -eq 0 ] || fail "the server exited $rc after SIGTERM"
    grep -q "shutting down" "$tmp/out" || fail "no shutdown message"
fi
pid=
if grep -v "warning" "$tmp/err" | grep -q .; then
    echo "server stderr:"; cat "$tmp/err"
fi
[ $fails -eq 0 ] && echo "serve api ok"
[ $fails -eq 0 ]
