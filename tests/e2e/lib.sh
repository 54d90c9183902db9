# Helpers for e2e tests (sourced). $ALLOY and $T are set by run.sh.
die() { echo "FAIL: $*" >&2; exit 1; }
# expect_fail CODE CMD... : run CMD, require exit CODE; stderr saved in $T/err
expect_fail() {
    want=$1; shift
    set +e; "$@" >"$T/stdout" 2>"$T/err"; got=$?; set -e
    [ "$got" -eq "$want" ] || { cat "$T/err" >&2; die "exit $got, wanted $want: $*"; }
}
expect_err() { grep -q -- "$1" "$T/err" || { cat "$T/err" >&2; die "stderr lacks '$1'"; }; }
