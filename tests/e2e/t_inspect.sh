# alloy inspect on the example model, the real HF files, and bad input.
. "$(dirname "$0")/lib.sh"
M=examples/models/base
$ALLOY inspect $M >"$T/out"
grep -q "transformer.h.5.mlp.c_proj.weight *F32 *\[512, 128\] *262144" "$T/out" || die "tensor line"
grep -q "lm_head.weight .*tied to the input embedding" "$T/out" || die "tied head not shown"
grep -q "safetensors, 1 file, 77 tensors, 1.33M parameters, 5.32 MB" "$T/out" || { cat "$T/out"; die "totals"; }
$ALLOY inspect $M --json >"$T/j"
grep -q '"parameter_count": 1329152' "$T/j" || die "json parameter_count"
grep -q '"format": "pt"' "$T/j" || die "json metadata"
$ALLOY inspect $M --stats >"$T/s"
grep -q "ln_f.weight" "$T/s" || die "stats"
$ALLOY inspect --help | grep -q "usage: alloy inspect" || die "help"
expect_fail 1 $ALLOY inspect
expect_fail 1 $ALLOY inspect --bogus $M
expect_fail 3 $ALLOY inspect "$T/missing"
expect_err "missing"
head -c 100 $M/model.safetensors >"$T/trunc.safetensors"
expect_fail 2 $ALLOY inspect "$T/trunc.safetensors"
expect_err "trunc.safetensors"
$ALLOY inspect tests/fixtures/hf/caikit_bert_tf/tf_model.h5 >"$T/h5"
grep -q "bert.embeddings.word_embeddings.weight" "$T/h5" || die "tf h5 names"
