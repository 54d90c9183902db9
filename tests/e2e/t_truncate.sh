# An input truncated by another process while a merge reads it (SIGBUS on the mapping),
# and Ctrl-C / SIGTERM in the middle of a merge: a clear message naming the file, a
# nonzero exit, and no output or temporary left behind.
. "$(dirname "$0")/lib.sh"
mkdir "$T/in" "$T/work"
cp -r examples/models "$T/in/"
sed "s#examples/models#$T/in/models#g" examples/merge-three-tasks.yaml >"$T/r.yaml"
# start_merge OUT: a merge slowed to ~20 ms per tensor, in the background
start_merge() { ALLOY_TEST_THROTTLE_MS=20 $ALLOY merge "$T/r.yaml" -o "$1" --quiet 2>"$T/err" & pid=$!; }
start_merge "$T/work/out"
sleep 0.5
truncate -s 100000 "$T/in/models/ft-newcities/model.safetensors"
set +e; wait $pid; rc=$?; set -e
[ $rc -eq 3 ] || { cat "$T/err"; die "exit $rc after the truncation, wanted 3"; }
expect_err "ft-newcities/model.safetensors: truncated or unreadable while being read"
[ -z "$(ls -A "$T/work")" ] || { ls -a "$T/work"; die "something was left behind"; }
# the truncated input is then refused up front, naming it
expect_fail 2 $ALLOY merge "$T/r.yaml" -o "$T/work/out" --quiet
expect_err "ft-newcities/model.safetensors"
cp examples/models/ft-newcities/model.safetensors "$T/in/models/ft-newcities/"
for sig in INT TERM; do
    start_merge "$T/work/out"
    sleep 0.5
    kill -$sig $pid
    set +e; wait $pid; rc=$?; set -e
    [ $rc -ne 0 ] || die "SIG$sig: exit 0"
    grep -q "interrupted" "$T/err" || { cat "$T/err"; die "SIG$sig: no message"; }
    [ -z "$(ls -A "$T/work")" ] || { ls -a "$T/work"; die "SIG$sig: something was left behind"; }
done
