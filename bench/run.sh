#!/bin/sh
# Benchmarks (not tests). Usage: sh bench/run.sh [convert]   (after `make bench-tools`)
# Data goes to bench/data/ (git-ignored; several GB). Figures are printed; copy them,
# with this command, into bench/RESULTS.md.
set -eu
cd "$(dirname "$0")/.."
B=${BUILD:-build}
ALLOY=$B/alloy PM=$B/bench/peakmem GEN=$B/bench/gen_llama
D=${BENCH_DATA:-bench/data}
mkdir -p "$D"
what=${1:-convert}

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

if [ "$what" = convert ]; then
    # ~1.0B parameters, Llama-shaped (20 layers, dim 2048, ffn 5632, GQA 32/4 heads, vocab 32000), F32 = 4.0 GB
    [ -f "$D/f32/model.safetensors" ] || $GEN "$D/f32" --layers 20 --dim 2048 --ffn 5632 --vocab 32000 --dtype f32 --seed 1
    ls -l "$D/f32/model.safetensors"
    echo "== inspect (header only), 5 runs"
    for i in 1 2 3 4 5; do $PM $ALLOY inspect "$D/f32" >/dev/null; done
    rm -rf "$D/bf16" "$D/f32b" "$D/cp.tmp"
    cat "$D/f32/model.safetensors" >/dev/null   # warm the page cache
    echo "== convert f32 -> bf16"
    $PM $ALLOY convert "$D/f32" "$D/bf16" --dtype bf16
    cat "$D/bf16/model.safetensors" >/dev/null
    echo "== convert bf16 -> f32"
    $PM $ALLOY convert "$D/bf16" "$D/f32b" --dtype f32
    echo "== cp of the f32 input (4.0 GB), same run"
    $PM cp "$D/f32/model.safetensors" "$D/cp.tmp"; rm -f "$D/cp.tmp"
    echo "== cp of the bf16 file (2.0 GB)"
    $PM cp "$D/bf16/model.safetensors" "$D/cp.tmp"; rm -f "$D/cp.tmp"
    echo "== convert f32 -> f32 sharded 2GB (zero-copy path)"
    rm -rf "$D/sh"
    $PM $ALLOY convert "$D/f32" "$D/sh" --shard-size 2GB
    echo "== convert f32 -> hdf5 (contiguous)"
    rm -f "$D/m.h5"
    $PM $ALLOY convert "$D/f32" "$D/m.h5"
    rm -rf "$D/bf16" "$D/f32b" "$D/sh" "$D/m.h5"
fi
