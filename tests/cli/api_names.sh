#!/bin/sh
# Every function declared in the public headers (include/optvq/*.h) has an
# argument check in tests/test_api_args.c: an API(name) entry in its table and
# an args_name() function that calls it. Names in the table that the headers
# do not declare fail too, so the table and the headers stay one list.
set -u
TEST=tests/test_api_args.c
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$TEST" ] || fail "$TEST is missing"

# Declarations, read through the preprocessor so that comments (which name
# functions too) do not count; a name directly followed by "(" is a function.
for h in include/optvq/*.h; do
    "$CC" -E -P -Iinclude "$h" >"$tmp/pp" || fail "cannot preprocess $h with $CC"
    grep -oE '(^|[^A-Za-z0-9_])optvq_[A-Za-z0-9_]+[[:space:]]*\(' "$tmp/pp" |
        sed -E 's/^[^o]*//; s/[[:space:]]*\($//'
done | sort -u >"$tmp/declared"
[ -s "$tmp/declared" ] || fail "found no optvq_ function in include/optvq/*.h"

grep -oE 'API\(optvq_[A-Za-z0-9_]+\)' "$TEST" | sed -E 's/^API\((.*)\)$/\1/' | sort >"$tmp/listed_all"
sort -u "$tmp/listed_all" >"$tmp/listed"
dups=$(uniq -d "$tmp/listed_all")
[ -z "$dups" ] || fail "listed twice in $TEST: $dups"

missing=$(comm -23 "$tmp/declared" "$tmp/listed")
[ -z "$missing" ] || fail "public functions without an API() entry in $TEST:" $missing
extra=$(comm -13 "$tmp/declared" "$tmp/listed")
[ -z "$extra" ] || fail "API() entries in $TEST that no public header declares:" $extra

# Each args_NAME() body must use NAME itself (call it, or hand it to a shared
# helper), so an entry cannot stand for a check that never runs its function.
while read -r name; do
    awk -v fn="$name" '
        $0 ~ "^static void args_" fn "\\(void\\)" { inside = 1; sub("args_" fn "\\(void\\)", "") }
        inside { print }
        inside && /}$/ && (/^}/ || /^static/) { exit }' "$TEST" >"$tmp/body"
    [ -s "$tmp/body" ] || fail "$TEST has no args_$name(void)"
    grep -qE "(^|[^A-Za-z0-9_])$name[[:space:]]*[(),]" "$tmp/body" ||
        fail "args_$name() in $TEST does not call $name"
done <"$tmp/declared"

# The shared library exports exactly the public header's functions: nothing
# internal (nn_*, model_*, ...) leaks into programs that link it.
so="$(dirname "${OPTVQ_BIN:-build/optvq}")/liboptvq.so"
if [ -f "$so" ]; then
    nm -D --defined-only "$so" | awk '{print $NF}' | sort -u >"$tmp/exported"
    leaked=$(comm -23 "$tmp/exported" "$tmp/declared")
    [ -z "$leaked" ] || fail "$so exports names the public headers do not declare:" $leaked
    absent=$(comm -13 "$tmp/exported" "$tmp/declared")
    [ -z "$absent" ] || fail "$so does not export:" $absent
else
    fail "$so is missing"
fi
echo "ok: $(wc -l <"$tmp/declared") public functions, each with an argument check"
echo "ok: $so exports exactly those"
