#!/bin/sh
# Run each libFuzzer target for a while (make fuzz). Usage:
#   sh tests/fuzz/run.sh BINDIR SECONDS [TARGET...]
# Working corpora and crash artifacts go to build-fuzz/; the committed seeds in
# tests/fuzz/seeds/ are read, never written. FUZZ_PAR=N runs N targets at once;
# FUZZ_RUNS=N also stops a target after N executions (whichever limit comes first).
set -u
bindir=$1; secs=$2; shift 2
targets=${*:-$(cd "$bindir" && ls fuzz_* | grep -v "\.d$" | sed "s/^fuzz_//")}
out=build-fuzz
mkdir -p "$out/crashes" "$out/logs"
par=${FUZZ_PAR:-1}
run_one() {
    t=$1
    mkdir -p "$out/corpus/$t"
    # libhdf5 1.10.8 itself leaks an object header when H5Dopen2 fails on some corrupted
    # files (tests/fuzz/RESULTS.md): leak checks are off for that target only. Its known
    # crashes inside libhdf5 happen in alloy's checking child (al_h5_probe) and are
    # contained; symbolizing each one's report would cost most of the run.
    extra=; san=
    [ "$t" = hdf5 ] && { extra=-detect_leaks=0; san=symbolize=0; }
    # YAML and JSON inputs past a few KB only slow the search down
    case $t in recipe|facts|index|tokenizer_json) extra="$extra -max_len=4096";; esac
    [ -n "${FUZZ_RUNS:-}" ] && extra="$extra -runs=$FUZZ_RUNS"
    ASAN_OPTIONS="${san}${ASAN_OPTIONS:+:$ASAN_OPTIONS}" "$bindir/fuzz_$t" $extra -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/crashes/$t-" "$out/corpus/$t" "tests/fuzz/seeds/$t" >"$out/logs/$t.log" 2>&1
    echo $? >"$out/logs/$t.rc"
}
n=0
for t in $targets; do
    run_one "$t" &
    n=$((n + 1))
    [ $((n % par)) -eq 0 ] && wait
done
wait
fail=0
printf '%-16s %14s %10s %8s %s\n' target executions exec/s corpus result
for t in $targets; do
    rc=$(cat "$out/logs/$t.rc")
    ex=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/logs/$t.log" | grep -o '[0-9]*$')
    eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$out/logs/$t.log" | grep -o '[0-9]*$')
    cor=$(ls "$out/corpus/$t" | wc -l)
    res=ok; [ "$rc" -eq 0 ] || { res="FAILED (rc $rc, see $out/logs/$t.log)"; fail=1; }
    printf '%-16s %14s %10s %8s %s\n' "$t" "${ex:-?}" "${eps:-?}" "$cor" "$res"
done
exit $fail
