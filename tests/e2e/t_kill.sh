# kill -9 at several points of a convert: the output path holds nothing or a complete,
# valid checkpoint identical to an uninterrupted run; the input is unchanged.
. "$(dirname "$0")/lib.sh"
M=examples/models/base
sum_in=$(cksum <$M/model.safetensors)
$ALLOY convert $M "$T/full" --shard-size 1MB
for delay in 0.05 0.2 0.35 0.5 0.65 0.8 0.95 1.1 1.3 1.6; do
    rm -rf "$T/out"
    ALLOY_TEST_THROTTLE_MS=20 $ALLOY convert $M "$T/out" --shard-size 1MB 2>/dev/null &
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    if [ -e "$T/out" ]; then
        for f in "$T/full"/*; do cmp "$f" "$T/out/$(basename "$f")" || die "partial output at $delay s"; done
    fi
    [ "$(cksum <$M/model.safetensors)" = "$sum_in" ] || die "input modified"
    rm -rf "$T"/.out.alloy-tmp-*
done
