#!/bin/sh
# Benchmarks (not tests). Usage: sh bench/run.sh [convert|merge|slerp|lines|mpi|forward|edit]
# (after `make bench-tools`; mpi also needs `make MPI=1`)
# Data goes to bench/data/ (git-ignored; several GB). Figures are printed; copy them,
# with this command, into bench/RESULTS.md.
set -eu
cd "$(dirname "$0")/.."
B=${BUILD:-build}
ALLOY=$B/alloy PM=$B/bench/peakmem GEN=$B/bench/gen_llama
D=${BENCH_DATA:-bench/data}
mkdir -p "$D"
what=${1:-convert}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "(cannot drop caches here)"; }

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

if [ "$what" = convert ]; then
    # ~1.0B parameters, Llama-shaped (20 layers, dim 2048, ffn 5632, GQA 32/4 heads, vocab 32000), F32 = 4.0 GB
    [ -f "$D/f32/model.safetensors" ] || $GEN "$D/f32" --layers 20 --dim 2048 --ffn 5632 --vocab 32000 --dtype f32 --seed 1
    ls -l "$D/f32/model.safetensors"
    echo "== inspect (header only), 5 runs"
    for i in 1 2 3 4 5; do $PM $ALLOY inspect "$D/f32" >/dev/null; done
    rm -rf "$D/bf16" "$D/f32b" "$D/cp.tmp"
    cat "$D/f32/model.safetensors" >/dev/null   # warm the page cache
    sync
    echo "== convert f32 -> bf16"
    $PM $ALLOY convert "$D/f32" "$D/bf16" --dtype bf16
    cat "$D/bf16/model.safetensors" >/dev/null
    sync
    echo "== convert bf16 -> f32"
    $PM $ALLOY convert "$D/bf16" "$D/f32b" --dtype f32
    # alloy fsyncs its output before renaming it into place, so the fair floor is a
    # copy that is synced to disk too; plain cp (page cache only) is shown as well
    sync
    echo "== cp of the f32 input (4.0 GB) + sync, same run"
    $PM sh -c "cp '$D/f32/model.safetensors' '$D/cp.tmp' && sync"; rm -f "$D/cp.tmp"; sync
    echo "== cp of the bf16 file (2.0 GB) + sync"
    $PM sh -c "cp '$D/bf16/model.safetensors' '$D/cp.tmp' && sync"; rm -f "$D/cp.tmp"; sync
    echo "== plain cp of the f32 input (no sync)"
    $PM cp "$D/f32/model.safetensors" "$D/cp.tmp"; rm -f "$D/cp.tmp"; sync
    echo "== convert f32 -> f32 sharded 2GB (zero-copy path)"
    rm -rf "$D/sh"
    $PM $ALLOY convert "$D/f32" "$D/sh" --shard-size 2GB
    echo "== convert f32 -> hdf5 (contiguous)"
    rm -f "$D/m.h5"
    $PM $ALLOY convert "$D/f32" "$D/m.h5"
    rm -rf "$D/bf16" "$D/f32b" "$D/sh" "$D/m.h5"
fi

if [ "$what" = merge ]; then
    # TIES (density 0.5) over a base + 3 fine-tunes of a ~1B-parameter Llama-shaped model in bf16
    # (20 layers, dim 2048, ffn 5632, GQA 32/4, vocab 32000: 1.01B parameters, 2.0 GB per model).
    G="--layers 20 --dim 2048 --ffn 5632 --vocab 32000 --dtype bf16 --base-seed 1"
    [ -f "$D/base/model.safetensors" ] || $GEN "$D/base" $G --seed 1 --delta 0
    for i in 1 2 3; do
        [ -f "$D/ft$i/model.safetensors" ] || $GEN "$D/ft$i" $G --seed $((i + 1)) --delta 0.002
    done
    {
        echo "merge_method: ties"
        echo "base_model: $D/base"
        echo "models:"
        for i in 1 2 3; do
            echo "  - model: $D/ft$i"
            echo "    parameters: {weight: 1.0, density: 0.5}"
        done
        echo "parameters: {normalize: true}"
        echo "dtype: bfloat16"
    } >"$D/ties.yaml"
    du -ch "$D"/base/model.safetensors "$D"/ft*/model.safetensors | tail -1
    floor() {
        echo "-- I/O floor: read the 4 inputs once, write one output-sized file (fsync)"
        s0=$(now)
        cat "$D"/base/model.safetensors "$D"/ft*/model.safetensors >/dev/null
        s1=$(now)
        dd if=/dev/zero of="$D/floor.bin" bs=4M count=$(( $(stat -c %s "$D/base/model.safetensors") / 4194304 )) conv=fsync 2>/dev/null
        s2=$(now)
        rm -f "$D/floor.bin"
        echo "floor: read $(secs $s0 $s1) s + write $(secs $s1 $s2) s = $(secs $s0 $s2) s"
    }
    echo "== warm (inputs in the page cache)"
    cat "$D"/base/model.safetensors "$D"/ft*/model.safetensors >/dev/null
    floor
    for t in 2 1; do
        rm -rf "$D/out"
        echo "-- alloy merge, $t thread(s)"
        $PM $ALLOY merge "$D/ties.yaml" -o "$D/out" --threads $t --quiet
    done
    echo "== cold (page cache dropped before each)"
    drop_caches; floor
    drop_caches; rm -rf "$D/out"
    echo "-- alloy merge, 2 threads"
    $PM $ALLOY merge "$D/ties.yaml" -o "$D/out" --threads 2 --quiet
    rm -rf "$D/out"
fi

if [ "$what" = slerp ]; then
    # SLERP of the base and one fine-tune above, t per layer (gradients and filters, as
    # published recipes write it): the most used method in real recipes
    [ -f "$D/ties.yaml" ] || { echo "run 'sh bench/run.sh merge' first"; exit 1; }
    {
        echo "merge_method: slerp"
        echo "base_model: $D/base"
        echo "slices:"
        echo "  - sources:"
        echo "      - {model: $D/base, layer_range: [0, 20]}"
        echo "      - {model: $D/ft1, layer_range: [0, 20]}"
        echo "parameters:"
        echo "  t:"
        echo "    - {filter: self_attn, value: [0, 0.5, 0.3, 0.7, 1]}"
        echo "    - {filter: mlp, value: [1, 0.5, 0.7, 0.3, 0]}"
        echo "    - value: 0.5"
        echo "dtype: bfloat16"
    } >"$D/slerp.yaml"
    cat "$D"/base/model.safetensors "$D"/ft1/model.safetensors >/dev/null
    s0=$(now)
    cat "$D"/base/model.safetensors "$D"/ft1/model.safetensors >/dev/null
    s1=$(now)
    dd if=/dev/zero of="$D/floor.bin" bs=4M count=$(( $(stat -c %s "$D/base/model.safetensors") / 4194304 )) conv=fsync 2>/dev/null
    s2=$(now)
    rm -f "$D/floor.bin"
    echo "floor: read $(secs $s0 $s1) s + write $(secs $s1 $s2) s = $(secs $s0 $s2) s"
    rm -rf "$D/out"
    echo "-- alloy merge (slerp), 2 threads, warm"
    $PM $ALLOY merge "$D/slerp.yaml" -o "$D/out" --threads 2 --quiet
    rm -rf "$D/out"
fi

if [ "$what" = lines ]; then
    # LiNeS alpha: auto on the TIES merge above: one extra streamed pass over the model
    [ -f "$D/ties.yaml" ] || { echo "run 'sh bench/run.sh merge' first"; exit 1; }
    { cat "$D/ties.yaml"; echo "lines: {alpha: auto, beta: 0.5}"; } >"$D/ties-lines.yaml"
    cat "$D"/base/model.safetensors "$D"/ft*/model.safetensors >/dev/null
    rm -rf "$D/out"
    echo "-- alloy merge (ties + lines alpha: auto), 2 threads, warm"
    $PM $ALLOY merge "$D/ties-lines.yaml" -o "$D/out" --threads 2 --quiet
    rm -rf "$D/out"
fi

if [ "$what" = mpi ]; then
    # The TIES merge above split over MPI ranks (make MPI=1 first): output in 256 MB
    # shards (8), so that there is something to split. This machine has 2 cores: ranks
    # compete for them, so 4 ranks is oversubscribed; each rank gets 2/N threads.
    [ -f "$D/ties.yaml" ] || { echo "run 'sh bench/run.sh merge' first"; exit 1; }
    MB=${BUILD_MPI:-build-mpi}/alloy
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
    # Open MPI binds each rank to one core by default (with 2 ranks or fewer), which
    # would put a rank's OpenMP threads and its output thread on one core
    export OMPI_MCA_hwloc_base_binding_policy=none
    cat "$D"/base/model.safetensors "$D"/ft*/model.safetensors >/dev/null
    rm -rf "$D/out" "$D/out-mpi"
    echo "-- one process (default build), 2 threads, warm"
    s0=$(now); $ALLOY merge "$D/ties.yaml" -o "$D/out" --threads 2 --shard-size 256MB --quiet; s1=$(now)
    echo "wall $(secs $s0 $s1) s"
    for n in 1 2 4; do
        t=$((2 / n)); [ $t -ge 1 ] || t=1
        rm -rf "$D/out-mpi"
        echo "-- mpirun -n $n, $t thread(s) per rank, warm"
        s0=$(now); mpirun -n $n $MB merge "$D/ties.yaml" -o "$D/out-mpi" --threads $t --shard-size 256MB --quiet; s1=$(now)
        echo "wall $(secs $s0 $s1) s"
        diff -r "$D/out" "$D/out-mpi" >/dev/null && echo "output byte-identical to one process" || echo "OUTPUT DIFFERS"
    done
    rm -rf "$D/out" "$D/out-mpi"
fi

if [ "$what" = forward ]; then
    # GPT-2-medium-shaped forward, 1 x 64 tokens: alloy (OpenBLAS) and PyTorch CPU, same run.
    # The alloy CLI points OpenBLAS at the right kernels when it misdetects this CPU;
    # the benchmark binary gets the same setting here.
    if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
    $B/bench/bench_forward "$D/gpt2m" 3
    /usr/bin/python3 bench/torch_forward.py "$D/gpt2m" 3
fi

if [ "$what" = edit ]; then
    # ROME on a GPT-2-medium-shaped model (random weights, 355M parameters) with GPT-2's
    # real tokenizer: statistics throughput, then the time of one edit (statistics excluded).
    if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
    [ -f "$D/gpt2m/model.safetensors" ] || $B/bench/bench_forward "$D/gpt2m" 1 >/dev/null
    cp tests/fixtures/tokenizers/gpt2/tokenizer.json "$D/gpt2m/"
    for t in 1 2; do
        echo "-- alloy stats, layer 8, 8000 tokens of examples/eval/mom2_corpus.txt, $t thread(s)"
        OMP_NUM_THREADS=$t $ALLOY stats "$D/gpt2m" --layer 8 --corpus examples/eval/mom2_corpus.txt --tokens 8000 -o "$D/st8.h5" 2>&1 | tr '\r' '\n' | grep "tokens in"
    done
    {
        echo "model: $D/gpt2m"
        echo "layer: 8"
        echo "edits:"
        echo "  - {prompt: \"{} plays the sport of\", subject: LeBron James, target_new: football, target_true: basketball}"
    } >"$D/edit.yaml"
    rm -rf "$D/edited"
    echo "-- alloy edit (ROME, default hyperparameters for GPT-2: 20 steps, 21 sampled context templates), 2 threads"
    $PM $ALLOY edit "$D/edit.yaml" --stats "$D/st8.h5" -o "$D/edited"
    rm -rf "$D/edited"
    # MEMIT: the same edit as a batch of one over layers 7-8 (statistics of layer 7 too)
    OMP_NUM_THREADS=2 $ALLOY stats "$D/gpt2m" --layer 7 --corpus examples/eval/mom2_corpus.txt --tokens 8000 -o "$D/st7.h5" >/dev/null 2>&1
    echo "-- alloy edit --method memit --layers 7,8 (default hyperparameters for GPT-2: 20 steps, 6 templates), 2 threads"
    $PM $ALLOY edit "$D/edit.yaml" --method memit --layers 7,8 --stats "$D/st{}.h5" -o "$D/edited"
    rm -rf "$D/edited"
fi
