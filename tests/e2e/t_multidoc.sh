# A multi-document recipe (mergekit-multi): the first document's output, named `mid`,
# is a model of the second. The intermediate is not kept.
. "$(dirname "$0")/lib.sh"
E=$PWD/examples/models
cat >"$T/multi.yaml" <<EOF2
name: mid
merge_method: task_arithmetic
base_model: $E/base
models:
  - model: $E/ft-instrument
    parameters: {weight: 1.0}
  - model: $E/ft-newcities
    parameters: {weight: 1.0}
parameters: {lambda: 0.8}
---
merge_method: linear
models:
  - model: mid
    parameters: {weight: 0.5}
  - model: $E/base
    parameters: {weight: 0.5}
EOF2
$ALLOY merge "$T/multi.yaml" -o "$T/out" --quiet
[ -f "$T/out/model.safetensors" ] || die "no output"
ls -a "$T" | grep -q "alloy-work" && die "intermediate left behind"
# the same in two steps gives the same bytes
head -n 9 "$T/multi.yaml" >"$T/step1.yaml"
cat >"$T/step2.yaml" <<EOF2
merge_method: linear
models:
  - model: $T/mid
    parameters: {weight: 0.5}
  - model: $E/base
    parameters: {weight: 0.5}
EOF2
$ALLOY merge "$T/step1.yaml" -o "$T/mid" --quiet
$ALLOY merge "$T/step2.yaml" -o "$T/two" --quiet
cmp "$T/out/model.safetensors" "$T/two/model.safetensors" || die "multi-document result differs from two steps"
