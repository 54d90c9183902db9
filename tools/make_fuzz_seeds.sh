#!/bin/sh
# Populate tests/fuzz/seeds/<target>/ with small valid inputs from the test fixtures (the
# fuzzers mutate from these). Run from the repository root after `make`; the output is
# committed. Python only writes the tiny .npz seeds (zip + .npy by hand, no numpy).
set -eu
S=tests/fuzz/seeds
ALLOY=${ALLOY:-build/alloy}
rm -rf "$S"
mkdir -p "$S/safetensors" "$S/index" "$S/hdf5" "$S/recipe" "$S/facts" "$S/tokenizer_json" "$S/tokenize" "$S/npz" "$S/lora"
cp tests/fixtures/hf/tiny_gpt2/model.safetensors "$S/safetensors/tiny_gpt2.safetensors"
cp tests/fixtures/runtime/llama_tiny/ref_logits.safetensors "$S/safetensors/ref_logits.safetensors"
printf '{"metadata": {"total_size": 16}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}\n' >"$S/index/two_shards.json"
printf '{"weight_map": {"a.weight": "model-00001-of-00002.safetensors"}}\n' >"$S/index/one_missing.json"
$ALLOY convert tests/fixtures/hf/tiny_gpt2/model.safetensors "$S/hdf5/tiny_gpt2.h5" --format hdf5 >/dev/null
$ALLOY convert tests/fixtures/hf/tiny_gpt2/model.safetensors "$S/hdf5/tiny_gpt2_deflate.h5" --format hdf5 --compress 6 --dtype bf16 >/dev/null
i=0
for r in tests/recipes/*.yaml examples/*.yaml; do
    [ "$(wc -c <"$r")" -lt 4000 ] || continue
    i=$((i + 1)); [ $i -le 40 ] || break
    cp "$r" "$S/recipe/$(basename "$r")"
done
cp examples/eval/demo_facts.yaml "$S/facts/"
head -c 3000 examples/edit-ten-facts.yaml >"$S/facts/edit_head.yaml"
cp tests/fixtures/tokenizers/hand/*.json "$S/tokenizer_json/"
# a rank-2 adapter for fuzz_lora's model (one layer, width 4)
${GEN:-build/bench/gen_llama} "$S/lora/tmp" --layers 1 --dim 4 --lora 2 >/dev/null
mv "$S/lora/tmp/adapter_model.safetensors" "$S/lora/q_proj.safetensors" && rm -rf "$S/lora/tmp"
printf 'Hello world' >"$S/tokenize/hello.txt"
printf 'caf\303\251 na\303\257ve \360\237\230\200 <s> \n\t  x' >"$S/tokenize/utf8.txt"
printf '\377\376 bytes \200' >"$S/tokenize/invalid_utf8.txt"
python3 - "$S/npz" <<'PY'
import io, struct, sys, zipfile
def npy(dtype, shape, raw):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, shape)
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + raw
m = 4
mom2 = struct.pack("<%df" % (m * m), *[float((i % m == i // m) * 3 + 0.5) for i in range(m * m)])
count = struct.pack("<q", 10)
for name, comp in (("stored", zipfile.ZIP_STORED), ("deflate", zipfile.ZIP_DEFLATED)):
    with zipfile.ZipFile("%s/%s.npz" % (sys.argv[1], name), "w", comp) as z:
        z.writestr("mom2.mom2.npy", npy("<f4", "(%d, %d)" % (m, m), mom2))
        z.writestr("mom2.count.npy", npy("<i8", "()", count))
PY
du -sh "$S"
