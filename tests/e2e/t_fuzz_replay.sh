# Replay every fuzz seed and every input a fuzzer once crashed on (tests/fuzz/regressions/)
# through the fuzz targets built without libFuzzer: in `make asan` this runs them under
# ASan/UBSan too. A crash or sanitizer report fails the test.
. "$(dirname "$0")/lib.sh"
: "${REPLAY:=build/fuzz-replay}"
[ -d "$REPLAY" ] || die "no replay binaries in $REPLAY (make builds them)"
# the one known leak inside libhdf5 itself (see the file)
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
n=0
for bin in "$REPLAY"/fuzz_*; do
    case $bin in *.d) continue;; esac
    t=${bin##*/fuzz_}
    set -- tests/fuzz/seeds/"$t"/*
    [ -d tests/fuzz/regressions/"$t" ] && set -- "$@" tests/fuzz/regressions/"$t"/*
    "$bin" "$@" >"$T/out" 2>&1 || { cat "$T/out"; die "fuzz_$t crashed on one of: $*"; }
    n=$((n + 1))
done
[ "$n" -ge 8 ] || die "only $n fuzz targets"
