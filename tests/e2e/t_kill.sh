# kill -9 at many points of a convert and of a merge: the output path holds nothing or a
# complete, valid checkpoint identical to an uninterrupted run; the inputs are unchanged.
. "$(dirname "$0")/lib.sh"
M=examples/models/base
sums() { cksum examples/models/*/model.safetensors; }
sum_in=$(sums)
# kill_at DELAY OUT REF CMD...: start CMD, SIGKILL it after DELAY s, check OUT against REF
kill_at() {
    delay=$1 out=$2 ref=$3; shift 3
    rm -rf "$out"
    ALLOY_TEST_THROTTLE_MS=20 "$@" 2>/dev/null &
    pid=$!
    sleep "$delay"
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    if [ -e "$out" ]; then
        for f in "$ref"/*; do cmp -s "$f" "$out/$(basename "$f")" || die "partial output at $delay s: $(basename "$f")"; done
        [ "$(ls "$out" | wc -l)" -eq "$(ls "$ref" | wc -l)" ] || die "output at $delay s lacks files"
        complete=$((complete + 1))
    fi
    [ "$(sums)" = "$sum_in" ] || die "an input was modified"
}
complete=0
$ALLOY convert $M "$T/full" --shard-size 1MB
for delay in 0.05 0.2 0.35 0.5 0.65 0.8 0.95 1.1 1.3 1.6; do
    kill_at $delay "$T/out" "$T/full" $ALLOY convert $M "$T/out" --shard-size 1MB
done
# 50 points spread over a throttled merge (20 ms per tensor, ~77 tensors: about 1.6 s)
$ALLOY merge examples/merge-three-tasks.yaml -o "$T/mfull" --shard-size 1MB --quiet
i=0
while [ $i -lt 50 ]; do
    delay=$(awk -v i=$i 'BEGIN { printf "%.3f", 0.02 + i * 0.036 }')
    kill_at "$delay" "$T/mout" "$T/mfull" $ALLOY merge examples/merge-three-tasks.yaml -o "$T/mout" --shard-size 1MB --quiet
    i=$((i + 1))
done
echo "kill points: 60, complete outputs at $complete of them, no partial ones"
exit 0
