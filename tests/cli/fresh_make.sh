#!/bin/sh
# The quick start on a machine whose packages `make deps` has not installed
# yet: pkg-config knows no package until the deps step has run (a fake
# pkg-config hides them until then). `make demo` and `make check` must build
# and link on that first call (a regression: the link line once lacked
# -lcairo because the Makefile asked pkg-config before deps ran).
set -eu
case "${OPTVQ_CFLAGS:-}" in *sanitize*) echo "skipped under sanitizers (the plain build covers it)"; exit 0 ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin"
real=$(command -v pkg-config)
cat >"$tmp/bin/pkg-config" <<SH
#!/bin/sh
[ -e "$tmp/installed" ] || exit 1
exec "$real" "\$@"
SH
chmod +x "$tmp/bin/pkg-config"
PATH="$tmp/bin:$PATH"
export PATH
# the fake machine really lacks the packages before deps:
! pkg-config --exists cairo
make -s -j2 BUILD="$tmp/build" DEPS_CMD="touch $tmp/installed" DEMO_ARGS=--help demo >"$tmp/demo.log" 2>&1 ||
    { cat "$tmp/demo.log"; exit 1; }
grep -q "optvq demo - " "$tmp/demo.log"
# again for `make check`: packages hidden, binaries relinked after deps
rm -f "$tmp/installed" "$tmp/build/optvq" "$tmp/build/run_tests"
make -s -j2 BUILD="$tmp/build" DEPS_CMD="touch $tmp/installed" CHECK_RUN=echo check >"$tmp/check.log" 2>&1 ||
    { cat "$tmp/check.log"; exit 1; }
[ -x "$tmp/build/optvq" ] && [ -x "$tmp/build/run_tests" ]
"$tmp/build/optvq" --version
echo "fresh make ok"
