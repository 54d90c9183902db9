#!/bin/sh
# The README's first command ends here: a real job on the example checkpoints.
set -eu
ALLOY=${1:-build/alloy}
cd "$(dirname "$0")/.."
OUT=$(mktemp -d /tmp/alloy-demo.XXXXXX)
echo "== the example base model"
$ALLOY inspect examples/models/base | tail -3
echo "== convert it to bf16 (round to nearest even) in a sharded directory"
$ALLOY convert examples/models/base "$OUT/base-bf16" --dtype bf16 --shard-size 1MB
ls "$OUT/base-bf16"
$ALLOY inspect "$OUT/base-bf16" --stats | grep -E "^transformer.h.0.mlp.c_fc.weight|parameters"
echo "== and to a deflate-compressed HDF5 file"
$ALLOY convert "$OUT/base-bf16" "$OUT/base.h5" --compress 6
ls -l "$OUT/base.h5" "$OUT/base-bf16"/model-0000*.safetensors | awk '{s+=$5} END {print "bytes in all outputs:", s}'
echo "demo outputs are in $OUT"
