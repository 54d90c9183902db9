# alloy convert: dtypes, formats, sharding, round trips, companion files, errors.
. "$(dirname "$0")/lib.sh"
M=examples/models/base
# a plain copy with alloy's writer is the reference for round trips
$ALLOY convert $M "$T/ref"
cmp -s $M/tokenizer.json "$T/ref/tokenizer.json" || die "tokenizer.json not copied"
[ -f "$T/ref/config.json" ] || die "config.json not copied"
# safetensors -> HDF5 (deflate) -> safetensors is bit-identical
$ALLOY convert "$T/ref" "$T/m.h5" --compress 6
$ALLOY convert "$T/m.h5" "$T/back.safetensors"
cmp "$T/ref/model.safetensors" "$T/back.safetensors" || die "st -> h5 -> st differs"
# HDF5 directory output
$ALLOY convert "$T/ref" "$T/h5dir" --format hdf5
[ -f "$T/h5dir/model.h5" ] || die "no model.h5"
$ALLOY inspect "$T/h5dir" | grep -q "hdf5, 1 file, 77 tensors" || die "h5 dir inspect"
# dtype conversion: f32 -> bf16 updates config.json; bf16 -> f32 -> bf16 is exact
$ALLOY convert $M "$T/bf16" --dtype bf16
grep -q '"torch_dtype": "bfloat16"' "$T/bf16/config.json" || die "torch_dtype not updated"
$ALLOY inspect "$T/bf16" | grep -q "BF16 x76" || die "not bf16"
$ALLOY convert "$T/bf16" "$T/f32" --dtype f32
$ALLOY convert "$T/f32" "$T/bf16again" --dtype bf16
cmp "$T/bf16/model.safetensors" "$T/bf16again/model.safetensors" || die "bf16 -> f32 -> bf16 differs"
$ALLOY convert examples/models/base-bf16 "$T/exbf16" --dtype bf16
$ALLOY convert "$T/bf16" "$T/f16" --dtype f16
$ALLOY inspect "$T/f16" | grep -q "F16 x76" || die "not f16"
# sharding: several shards + index, and back to one file identical to the reference
$ALLOY convert "$T/ref" "$T/shards" --shard-size 1MB
[ -f "$T/shards/model-00001-of-00007.safetensors" ] || { ls "$T/shards"; die "shards"; }
grep -q '"total_size": 5316608' "$T/shards/model.safetensors.index.json" || die "index total_size"
$ALLOY convert "$T/shards" "$T/unsharded"
cmp "$T/ref/model.safetensors" "$T/unsharded/model.safetensors" || die "sharded round trip differs"
# errors: each a clear message and a nonzero exit, nothing written
expect_fail 1 $ALLOY convert "$T/ref" "$T/ref2" --dtype int8
expect_fail 1 $ALLOY convert "$T/ref" "$T/bf16"
expect_err "already exists"
expect_fail 1 $ALLOY convert "$T/ref" "$T/ref" --force
expect_err "input"
expect_fail 1 $ALLOY convert "$T/ref" "$T/x.safetensors" --compress 3
expect_fail 3 $ALLOY convert "$T/nope" "$T/out"
[ ! -e "$T/out" ] || die "output left behind"
head -c 4000 "$T/ref/model.safetensors" >"$T/trunc.safetensors"
expect_fail 2 $ALLOY convert "$T/trunc.safetensors" "$T/out2"
expect_err "trunc.safetensors"
[ ! -e "$T/out2" ] || die "output left behind"
ls -a "$T" | grep -q alloy-tmp && die "temporary left behind"
# inputs are never modified
cmp $M/model.safetensors /dev/stdin <$M/model.safetensors
