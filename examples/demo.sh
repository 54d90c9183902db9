#!/bin/sh
# The README's first command ends here: real merges of the example checkpoints.
set -eu
ALLOY=${1:-build/alloy}
cd "$(dirname "$0")/.."
OUT=$(mktemp -d /tmp/alloy-demo.XXXXXX)
echo "== the inputs: a small GPT-2 base and three fine-tunes, each taught one new task"
for m in base ft-instrument ft-newcities ft-newpeople; do
    printf '%-14s ' "$m"; $ALLOY inspect examples/models/$m | grep parameters
done
echo
echo "== task arithmetic of the three fine-tunes (examples/merge-three-tasks.yaml)"
$ALLOY merge examples/merge-three-tasks.yaml -o "$OUT/three-tasks"
ls "$OUT/three-tasks"
echo
echo "== TIES with a per-layer density gradient, written as bf16 (examples/ties-gradient.yaml)"
$ALLOY merge examples/ties-gradient.yaml --dry-run | grep -A4 "^transformer.h.5.attn.c_attn.weight"
$ALLOY merge examples/ties-gradient.yaml -o "$OUT/ties" --quiet
$ALLOY inspect "$OUT/ties" | tail -3
echo
echo "merged models are in $OUT"
