# alloy stats and alloy edit through the CLI, on the example base model.
. "$(dirname "$0")/lib.sh"
E=examples/models
$ALLOY stats $E/base --layer 2 --corpus examples/eval/mom2_corpus.txt --tokens 4000 -o "$T/st2.h5" >/dev/null 2>&1
$ALLOY stats $E/base --layer 3 --corpus examples/eval/mom2_corpus.txt --tokens 2000 -o "$T/st3.h5" >/dev/null 2>&1
cat >"$T/one.yaml" <<EOF2
model: $E/base
layer: 2
hparams: {v_num_grad_steps: 40, v_weight_decay: 0.1}
context_templates: ["{}", "The sport of Vabrim. {}", "There is a. {}"]
edits:
  - prompt: "{}'s favorite sport is"
    subject: Bodros Drerir
    target_new: fencing
    target_true: rowing
    paraphrase_prompts: ["The favorite sport of Bodros Drerir is"]
    neighborhood_prompts: ["Bodros Pewegul plays the sport of"]
EOF2
$ALLOY edit "$T/one.yaml" --stats "$T/st2.h5" -o "$T/out" --eval --json >"$T/report.json" 2>"$T/err" || { cat "$T/err"; die "edit failed"; }
grep -q '"efficacy_right_after": 1.0' "$T/report.json" || die "the edit did not take"
[ -f "$T/out/edits.json" ] && [ -f "$T/out/tokenizer.json" ] || die "output files"
$ALLOY generate "$T/out" --prompt "Bodros Drerir's favorite sport is" -n 2 | grep -q "fencing" || die "generation after the edit"
# only the edited weight differs from the input
$ALLOY diff $E/base "$T/out" --tensors >"$T/diff.txt"
grep -Eq "^transformer.h.2.mlp.c_proj.weight +[0-9]+ +[0-9.e-]*[1-9]" "$T/diff.txt" || die "the edited weight did not change"
[ "$(grep -E '^transformer\.' "$T/diff.txt" | awk '$4 != 0' | wc -l)" -eq 1 ] || { grep -E '^transformer\.' "$T/diff.txt" | awk '$4 != 0'; die "other tensors changed"; }
# identity statistics work too
$ALLOY edit "$T/one.yaml" --stats none -o "$T/out2" >/dev/null 2>&1 || die "stats: none"
# bad facts files: a clear message, nonzero exit, nothing written, before any work
printf 'model: %s\nedits:\n  - {prompt: "{} is", subject: Nobody Here, target_new: x}\n' "$E/base" >"$T/b1.yaml"
sed -i 's/{prompt: "{} is", subject: Nobody Here/{prompt: "Alice is", subject: Bob/' "$T/b1.yaml"
expect_fail 2 $ALLOY edit "$T/b1.yaml" --stats none -o "$T/x1"
expect_err "b1.yaml:3:5: subject 'Bob' does not occur"
printf 'model: %s\nedits:\n  - {prompt: "{} is", subject: A, target_new: "  "}\n' "$E/base" >"$T/b2.yaml"
expect_fail 2 $ALLOY edit "$T/b2.yaml" --stats none -o "$T/x2"
expect_err "target_new is empty"
expect_fail 2 $ALLOY edit "$T/one.yaml" --layer 9 --stats none -o "$T/x3"
expect_err "layer 9 is out of range"
expect_fail 2 $ALLOY edit "$T/one.yaml" --stats "$T/st3.h5" -o "$T/x4"
expect_err "st3.h5"
expect_fail 2 $ALLOY edit "$T/one.yaml" -o "$T/x5"
expect_err "needs second-moment statistics"
for x in x1 x2 x3 x4 x5; do [ ! -e "$T/$x" ] || die "$x was written"; done
