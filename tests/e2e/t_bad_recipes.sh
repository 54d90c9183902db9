# Bad recipes: each gives one clear message with file:line:column, a nonzero exit,
# and writes nothing.
. "$(dirname "$0")/lib.sh"
E=$PWD/examples/models
$GEN "$T/wide" --layers 6 --dim 16 --ffn 32 --vocab 64 --heads 4 --kv-heads 2 >/dev/null
$GEN "$T/narrow" --layers 6 --dim 8 --ffn 32 --vocab 64 --heads 4 --kv-heads 2 >/dev/null
n=0
# bad CODE LINE:COL PHRASE <<recipe
bad() {
    code=$1 where=$2 phrase=$3
    n=$((n + 1))
    cat >"$T/r$n.yaml"
    expect_fail "$code" $ALLOY merge "$T/r$n.yaml" -o "$T/out$n"
    expect_err "r$n.yaml:$where"
    expect_err "$phrase"
    [ ! -e "$T/out$n" ] || die "case $n wrote output"
    ls -a "$T" | grep -q "out$n" && die "case $n left a temporary"
    true
}
bad 2 1:15 "unknown merge_method 'tiez'" <<EOF2
merge_method: tiez
base_model: $E/base
models:
  - model: $E/ft-instrument
EOF2
bad 2 2:5 "missing required parameter 'weight'" <<EOF2
models:
  - model: $E/ft-instrument
merge_method: linear
EOF2
bad 2 4:26 "must be a number" <<EOF2
merge_method: linear
models:
  - model: $E/ft-instrument
    parameters: {weight: heavy}
EOF2
bad 2 5:22 "reversed" <<EOF2
merge_method: passthrough
slices:
  - sources:
      - model: $E/base
        layer_range: [3, 1]
EOF2
bad 2 5:22 "two integers" <<EOF2
merge_method: passthrough
slices:
  - sources:
      - model: $E/base
        layer_range: [0]
EOF2
bad 2 5:22 "past its 6 layers" <<EOF2
merge_method: passthrough
slices:
  - sources:
      - model: $E/base
        layer_range: [0, 12]
EOF2
bad 2 4:12 "not found" <<EOF2
merge_method: linear
models:
  - model: $E/base
  - model: /nonexistent/model
parameters: {weight: 1}
EOF2
bad 2 3:13 "mapping values are not allowed" <<EOF2
merge_method: linear
models:
  - model: a: b
EOF2
bad 2 1:1 "must be a mapping" <<EOF2
- just
- a list
EOF2
bad 2 1:15 "ties requires base_model" <<EOF2
merge_method: ties
models:
  - model: $E/ft-instrument
    parameters: {weight: 1, density: 0.5}
EOF2
bad 2 5:38 "out of range" <<EOF2
merge_method: ties
base_model: $E/base
models:
  - model: $E/ft-instrument
    parameters: {weight: 1, density: 1.5}
EOF2
bad 2 5:8 "unknown dtype" <<EOF2
merge_method: linear
models:
  - model: $E/base
    parameters: {weight: 1}
dtype: bfloat
EOF2
bad 2 2:1 "duplicate key" <<EOF2
merge_method: linear
merge_method: ties
models:
  - model: $E/base
EOF2
bad 2 4:1 "exactly one of" <<EOF2
merge_method: passthrough
models:
  - model: $E/base
slices:
  - sources:
      - model: $E/base
        layer_range: [0, 2]
EOF2
bad 2 3:3 "must be a list" <<EOF2
merge_method: linear
models:
  model: $E/base
EOF2
bad 2 4:12 "different architectures" <<EOF2
merge_method: task_arithmetic
base_model: $E/base
models:
  - model: $T/wide
    parameters: {weight: 1}
EOF2
bad 2 4:12 "has shape \[64, 8\] but" <<EOF2
merge_method: task_arithmetic
base_model: $T/wide
models:
  - model: $T/narrow
    parameters: {weight: 1}
EOF2
bad 2 1:15 "missing required parameter 't'" <<EOF2
merge_method: slerp
base_model: $E/base
models:
  - model: $E/ft-instrument
EOF2
bad 2 2:9 "undefined alias" <<EOF2
merge_method: linear
models: *nothing
EOF2
bad 2 1:1 "merge_method" <<EOF2
models:
  - model: $E/base
    parameters: {weight: 1}
EOF2
bad 2 3:12 "LoRA adapter of" <<EOF2
merge_method: linear
models:
  - model: $E/base+some/lora
    parameters: {weight: 1}
EOF2
mkdir -p "$T/pickled"
printf '{"peft_type": "LORA", "r": 2, "lora_alpha": 4}' >"$T/pickled/adapter_config.json"
printf 'not read' >"$T/pickled/adapter_model.bin"
bad 5 3:12 "pickles" <<EOF2
merge_method: linear
models:
  - model: $E/base+$T/pickled
    parameters: {weight: 1}
EOF2
bad 2 4:7 "must be a number" <<EOF2
merge_method: slerp
base_model: $E/base
parameters:
  t: [a, 0.5]
models:
  - model: $E/ft-instrument
EOF2
echo "bad recipes: $n cases"
[ "$n" -ge 20 ] || die "too few cases"
