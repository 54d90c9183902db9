# alloy merge through the CLI: output directory, determinism, --check, progress.
. "$(dirname "$0")/lib.sh"
E=examples/models
cat >"$T/dare.yaml" <<EOF2
merge_method: dare_ties
base_model: $E/base
models:
  - model: $E/ft-instrument
    parameters: {weight: 0.6, density: 0.4}
  - model: $E/ft-newcities
    parameters: {weight: 0.6, density: [0.2, 0.8]}
dtype: float32
out_dtype: bfloat16
EOF2
$ALLOY merge "$T/dare.yaml" -o "$T/d1" --threads 1 --seed 7 --quiet
$ALLOY merge "$T/dare.yaml" -o "$T/d2" --threads 2 --seed 7 --quiet
cmp "$T/d1/model.safetensors" "$T/d2/model.safetensors" || die "DARE differs between 1 and 2 threads"
$ALLOY merge "$T/dare.yaml" -o "$T/d3" --threads 2 --seed 8 --quiet
cmp -s "$T/d1/model.safetensors" "$T/d3/model.safetensors" && die "a different seed gave the same DARE output"
# the output directory: weights, config with torch_dtype, tokenizer, card, recipe
for f in model.safetensors config.json tokenizer.json vocab.json merges.txt README.md alloy_recipe.yaml; do
    [ -f "$T/d1/$f" ] || die "missing $f"
done
grep -q '"torch_dtype": "bfloat16"' "$T/d1/config.json" || die "torch_dtype"
cmp "$T/dare.yaml" "$T/d1/alloy_recipe.yaml" || die "recipe not kept verbatim"
grep -q "dare_ties" "$T/d1/README.md" || die "model card"
grep -q "ft-newcities" "$T/d1/README.md" || die "model card inputs"
$ALLOY inspect "$T/d1" | grep -q "BF16 x76" || die "out_dtype"
# sharded output and the index
$ALLOY merge "$T/dare.yaml" -o "$T/sh" --seed 7 --shard-size 1MB --quiet
[ -f "$T/sh/model.safetensors.index.json" ] || die "no index"
$ALLOY convert "$T/sh" "$T/sh1.safetensors"
$ALLOY convert "$T/d1" "$T/d1b.safetensors"
cmp "$T/sh1.safetensors" "$T/d1b.safetensors" || die "sharded merge differs"
# HDF5 output
$ALLOY merge "$T/dare.yaml" -o "$T/h5" --seed 7 --out-format hdf5 --quiet
$ALLOY convert "$T/h5" "$T/h5b.safetensors"
cmp "$T/h5b.safetensors" "$T/d1b.safetensors" || die "hdf5 merge differs"
# --check reads no model; --dry-run shows resolved per-layer parameters
$ALLOY merge "$T/dare.yaml" --check | grep -q "ok (1 document" || die "--check"
$ALLOY merge "$T/dare.yaml" --dry-run >"$T/plan"
grep -A10 "^transformer.h.5.mlp.c_fc.weight" "$T/plan" | grep -q "density\[$E/ft-newcities\]=0.8" || die "gradient at the last layer"
grep -A10 "^transformer.wte.weight" "$T/plan" | grep -q "density\[$E/ft-newcities\]=0.2" || die "embeddings at t=0"
# progress: plain lines when stderr is not a terminal
$ALLOY merge "$T/dare.yaml" -o "$T/p" 2>"$T/prog"
grep -q "merge: 76/76 tensors" "$T/prog" || die "progress line"
# output exists / onto an input
expect_fail 1 $ALLOY merge "$T/dare.yaml" -o "$T/d1"
expect_err "already exists"
cat >"$T/self.yaml" <<EOF2
merge_method: linear
models:
  - model: $T/d1
    parameters: {weight: 1}
EOF2
expect_fail 1 $ALLOY merge "$T/self.yaml" -o "$T/d1" --force
expect_err "input"
