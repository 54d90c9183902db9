#!/bin/sh
# End-to-end tests through the CLI. Each tests/e2e/t_*.sh is run with $ALLOY set to the
# binary and $T to a fresh temporary directory; it exits non-zero on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${ALLOY:?set ALLOY to the alloy binary}"
pass=0; fail=0; failed=""
for t in "$here"/t_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .sh)
    T=$(mktemp -d /tmp/alloy-e2e.XXXXXX)
    if ALLOY="$ALLOY" T="$T" sh -eu "$t" >"$T.log" 2>&1; then
        pass=$((pass + 1)); echo "[ OK ] $name"
    else
        fail=$((fail + 1)); failed="$failed $name"; echo "[FAIL] $name"; sed 's/^/    /' "$T.log" | tail -30
    fi
    rm -rf "$T" "$T.log"
done
echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
