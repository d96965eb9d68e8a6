#!/bin/sh
# optvq serve in a real browser (tests/cli/serve_browser.py): headless
# chromium driven by python3-selenium uploads an image, checks the metrics
# and tokens against 'optvq eval' / 'optvq reconstruct' on the same file,
# switches to nearest, runs the toy, and watches the console.
# `make check` installs chromium, chromium-driver and python3-selenium
# (scripts/install-deps.sh); where that could not be done the test is
# skipped with a message. SERVE_SCREENSHOT=FILE.png keeps a screenshot.
set -u
BIN=${OPTVQ_BIN:-build/optvq}
PY=/usr/bin/python3
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
{ [ -x "$PY" ] && "$PY" -c "import selenium" 2>/dev/null; } || missing="$missing python3-selenium"
if [ -n "$missing" ]; then
    echo "SKIP: not installed:$missing (scripts/install-deps.sh installs them; it could not here)"
    exit 0
fi
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
EX=$(pwd)/src/serve/web/examples/3-shirt.png
M=models/fashion-mnist-optvq
"$BIN" reconstruct --model $M --input "$EX" --out "$tmp/rec.png" --save-indices "$tmp/tok.npy" --threads 2 \
    >/dev/null 2>&1 || { echo "FAIL: optvq reconstruct failed"; exit 1; }
"$BIN" reconstruct --model $M --input "$EX" --out "$tmp/rec_n.png" --save-indices "$tmp/tok_n.npy" \
    --assign nearest --threads 2 >/dev/null 2>&1 || { echo "FAIL: optvq reconstruct --assign nearest failed"; exit 1; }
"$BIN" eval --model $M --data "$EX" --json "$tmp/eval.json" --threads 2 >/dev/null 2>&1 ||
    { echo "FAIL: optvq eval failed"; exit 1; }

"$BIN" serve --port 0 --threads 2 >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: the server did not start"; cat "$tmp/out" "$tmp/err"; exit 1; }
# chromium wants a writable HOME for its profile
HOME=$tmp timeout 300 "$PY" tests/cli/serve_browser.py "http://127.0.0.1:$port/" "$EX" "$tmp/tok.npy" \
    "$tmp/eval.json" "$tmp/tok_n.npy" ${SERVE_SCREENSHOT:+"$SERVE_SCREENSHOT"}
rc=$?
kill -0 "$pid" 2>/dev/null || { echo "FAIL: the server died"; cat "$tmp/err"; rc=1; }
exit $rc
