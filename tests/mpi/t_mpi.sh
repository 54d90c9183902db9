# Distributed runs (make MPI=1 test-mpi): mpirun -n 1, 2 and 4 on this machine
# (oversubscribed), against the one-process binary of the default build.
#   ALLOY      the default build's alloy (no MPI)
#   ALLOY_MPI  the MPI build's alloy
#   STATS_CMP  tests/mpi/stats_cmp
set -eu
: "${ALLOY:?}" "${ALLOY_MPI:?}" "${STATS_CMP:?}"
die() { echo "FAIL: $*" >&2; exit 1; }
T=$(mktemp -d /tmp/alloy-mpi.XXXXXX)
trap 'rm -rf "$T"' EXIT
# Open MPI in a container, as root, more ranks than cores: allowed, and shared-memory
# transport without the ptrace-based single copy (often refused in containers)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
mpi() { ranks=$1; shift; mpirun -n "$ranks" "$@"; }
E=examples/models
B=$E/base; A=$E/ft-instrument; C=$E/ft-newcities; D=$E/ft-newpeople

# one recipe per method (and per whole-model option), over the example family
recipe() {   # NAME BODY
    printf '%s\n' "$2" >"$T/$1.yaml"
}
w3="models:
  - model: $A
    parameters: {weight: 0.5}
  - model: $C
    parameters: {weight: [0.2, 0.6]}
  - model: $D
    parameters: {weight: 0.2}"
three="models:
  - model: $A
    parameters: {weight: 0.5, density: 0.5}
  - model: $C
    parameters: {weight: 0.3, density: [0.2, 0.8]}
  - model: $D
    parameters: {weight: 0.2, density: 0.6}"
flat="models:
  - model: $A
    parameters: {weight: 0.5, density: 0.3}
  - model: $C
    parameters: {weight: 0.3, density: 0.3}
  - model: $D
    parameters: {weight: 0.2, density: 0.3}"
recipe linear "merge_method: linear
$w3
dtype: float32
out_dtype: bfloat16"
recipe task_arithmetic "merge_method: task_arithmetic
base_model: $B
$w3
dtype: float32"
for m in ties dare_ties dare_linear breadcrumbs breadcrumbs_ties della della_linear; do
    recipe $m "merge_method: $m
base_model: $B
$three
dtype: float32
out_dtype: bfloat16"
done
recipe sce "merge_method: sce
base_model: $B
models:
  - model: $A
  - model: $C
  - model: $D
parameters: {select_topk: 0.5}
dtype: float32"
recipe ties_model "merge_method: ties
base_model: $B
$flat
parameters: {trim_scope: model}
dtype: float32"
recipe lines_auto "merge_method: ties
base_model: $B
$flat
lines: {alpha: auto, beta: 1.5}
dtype: float32"
recipe lines "merge_method: lines
base_model: $B
models:
  - model: $A
parameters: {alpha: 0.3, beta: 0.6}
dtype: float32"
recipe slerp "merge_method: slerp
base_model: $B
models:
  - model: $B
  - model: $A
parameters:
  t:
    - filter: attn
      value: [0, 0.5, 1]
    - value: 0.4
dtype: bfloat16"
recipe nuslerp "merge_method: nuslerp
models:
  - model: $A
    parameters: {weight: 0.7}
  - model: $C
    parameters: {weight: 0.3}
dtype: float32"
recipe multislerp "merge_method: multislerp
base_model: $B
$w3
dtype: float32"
recipe karcher "merge_method: karcher
models:
  - model: $A
  - model: $C
  - model: $D
dtype: float32"
recipe model_stock "merge_method: model_stock
base_model: $B
models:
  - model: $A
  - model: $C
  - model: $D
dtype: float32"
recipe nearswap "merge_method: nearswap
base_model: $B
models:
  - model: $A
parameters: {t: 0.0001}
dtype: float32"
recipe arcee_fusion "merge_method: arcee_fusion
base_model: $B
models:
  - model: $A
dtype: float32"
recipe passthrough "merge_method: passthrough
slices:
  - sources:
      - model: $B
        layer_range: [0, 4]
  - sources:
      - model: $A
        layer_range: [2, 6]
dtype: float32"
recipe multidoc "name: first
merge_method: dare_ties
base_model: $B
$three
dtype: float32
---
merge_method: slerp
base_model: $B
models:
  - model: $B
  - model: first
parameters: {t: 0.5}
dtype: float32"

n=0
for y in "$T"/*.yaml; do
    [ -n "${ONLY:-}" ] && [ "$(basename "$y" .yaml)" != "$ONLY" ] && continue
    name=$(basename "$y" .yaml)
    $ALLOY merge "$y" -o "$T/ref-$name" --shard-size 500KB --seed 11 --quiet
    nsh=$(ls "$T/ref-$name" | grep -c '^model-.*safetensors$' || true)
    [ "$nsh" -ge 4 ] || die "$name: only $nsh shards; the split would test nothing"
    for np in 1 2 4; do
        mpi $np $ALLOY_MPI merge "$y" -o "$T/out-$name-$np" --shard-size 500KB --seed 11 --quiet \
            || die "$name: mpirun -n $np failed"
        diff -r "$T/ref-$name" "$T/out-$name-$np" >/dev/null || die "$name: -n $np differs from one process"
        ls -a "$T" | grep -q "alloy-tmp\|alloy-work" && die "$name: a temporary was left"
        rm -rf "$T/out-$name-$np"
    done
    rm -rf "$T/ref-$name"
    n=$((n + 1)); names="${names:-} $name"
done
echo "merges: $n recipes byte-identical with mpirun -n 1, 2, 4:$names"
[ -n "${ONLY:-}" ] || [ "$n" -ge 22 ] || die "only $n recipes ran"

# node-local output directories, simulated with a different -o per "node" (MPMD):
# rank 0 alone on A, rank 1 on B, ranks 2 and 3 sharing C. Copied together, the three
# directories are the one-process output.
y=$T/ties.yaml
$ALLOY merge "$y" -o "$T/ref" --shard-size 500KB --quiet
a="merge $y --shard-size 500KB --quiet -o"
mpirun -n 1 $ALLOY_MPI $a "$T/A" : -n 1 $ALLOY_MPI $a "$T/B" : -n 2 $ALLOY_MPI $a "$T/C" || die "node-local run"
[ -f "$T/A/model.safetensors.index.json" ] && [ -f "$T/A/config.json" ] || die "rank 0's part lacks the index or config"
[ -n "$(ls "$T/B")" ] && [ -n "$(ls "$T/C")" ] || die "a node's part is empty"
[ -f "$T/B/config.json" ] && die "a node other than rank 0's got the config"
mkdir "$T/gathered"
cp "$T"/A/* "$T"/B/* "$T"/C/* "$T/gathered/"
diff -r "$T/ref" "$T/gathered" >/dev/null || die "gathered node-local output differs from one process"
ls -a "$T" | grep -q "alloy-tmp" && die "a temporary was left"
# a multi-document recipe needs the shared filesystem: a clear error, nothing left
set +e
mpirun -n 1 $ALLOY_MPI merge "$T/multidoc.yaml" -o "$T/MA" --quiet : -n 1 $ALLOY_MPI merge "$T/multidoc.yaml" -o "$T/MB" --quiet 2>"$T/err"
rc=$?
set -e
[ "$rc" -ne 0 ] && grep -q "filesystem all ranks share" "$T/err" || { cat "$T/err"; die "multidoc on node-local dirs"; }
ls -a "$T" | grep -q "^M\|alloy-work\|alloy-tmp" && die "a failed node-local run left output"
echo "node-local directories: gathered output byte-identical; multi-document recipes refused"
rm -rf "$T/ref" "$T/A" "$T/B" "$T/C" "$T/gathered"

# a failure on one rank: every rank exits nonzero, one message (rank 0's), no output
y=$T/ties.yaml
tensor=transformer.h.5.mlp.c_proj.weight
set +e
ALLOY_TEST_FAIL_TENSOR=$tensor mpi 4 $ALLOY_MPI merge "$y" -o "$T/fail" --shard-size 500KB --quiet >"$T/out" 2>"$T/err"
rc=$?
set -e
[ "$rc" -ne 0 ] || die "an injected failure exited 0"
[ "$(grep -c "not found (injected" "$T/err")" -eq 1 ] || { cat "$T/err"; die "wanted one message"; }
grep -q "alloy: error: rank [123]: .*'$tensor'" "$T/err" || { cat "$T/err"; die "message lacks the rank or tensor"; }
ls -a "$T" | grep -q "fail" && die "a failed run left output"
# each rank says so (ALLOY_MPI_VERBOSE keeps the other ranks' stderr) and exits nonzero
set +e
ALLOY_MPI_VERBOSE=1 ALLOY_TEST_FAIL_TENSOR=$tensor mpi 4 $ALLOY_MPI merge "$y" -o "$T/fail" --shard-size 500KB --quiet 2>"$T/err4"
set -e
[ "$(grep -c "not found (injected" "$T/err4")" -eq 4 ] || { cat "$T/err4"; die "not every rank reported the failure"; }
ls -a "$T" | grep -q "fail" && die "a failed run left output"
echo "failure on one rank: all 4 ranks failed with its message, no output"

# statistics: the corpus split by batches over ranks, sums added in F64
stats() { "$@" $B --layer 2 --corpus examples/eval/mom2_corpus.txt --tokens 4000 --batch-tokens 256 --quiet; }
stats $ALLOY stats -o "$T/st.h5" >/dev/null
for np in 1 2 4; do
    stats mpi $np $ALLOY_MPI stats -o "$T/st$np.h5" >/dev/null
    $STATS_CMP "$T/st.h5" "$T/st$np.h5" 1e-12 || die "statistics with -n $np"
done
echo "statistics: -n 1, 2, 4 equal to one process within 1e-12 of max |S|"
