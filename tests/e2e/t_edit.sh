# alloy stats and alloy edit through the CLI, on the example base model.
. "$(dirname "$0")/lib.sh"
E=examples/models
$ALLOY stats $E/base --layer 2 --corpus examples/eval/mom2_corpus.txt --tokens 4000 -o "$T/st2.h5" >/dev/null 2>&1
$ALLOY stats $E/base --layer 1 --corpus examples/eval/mom2_corpus.txt --tokens 4000 -o "$T/st1.h5" >/dev/null 2>&1
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
# --undo: subtracting the recorded factors gives the input back (to F32 rounding)
[ -f "$T/out/edits.h5" ] || die "no edits.h5"
$ALLOY edit --undo "$T/out" -o "$T/undone" 2>"$T/err" || { cat "$T/err"; die "undo failed"; }
$ALLOY diff $E/base "$T/undone" --tensors >"$T/diff.txt"
awk '/^transformer.h.2.mlp.c_proj.weight/ { if ($4 > 1e-5) bad = 1; found = 1 } END { exit !(found && !bad) }' "$T/diff.txt" \
    || { grep c_proj "$T/diff.txt"; die "undo did not restore the weight"; }
$ALLOY generate "$T/undone" --prompt "Bodros Drerir's favorite sport is" -n 2 | grep -q "fencing" && die "the edit survived --undo"
# MEMIT: one batch over layers 1..2, statistics per layer by a {} pattern
sed -e 's/^layer: 2/method: memit\nlayers: [1, 2]/' -e 's/^hparams: {/hparams: {clamp_norm_factor: 4, /' "$T/one.yaml" >"$T/memit.yaml"
$ALLOY edit "$T/memit.yaml" --stats "$T/st{}.h5" -o "$T/mout" --eval --json >"$T/mreport.json" 2>"$T/err" || { cat "$T/err"; die "memit failed"; }
grep -q '"efficacy_right_after": 1.0' "$T/mreport.json" || die "the MEMIT edit did not take"
$ALLOY diff $E/base "$T/mout" --tensors >"$T/diff.txt"
[ "$(grep -E '^transformer\.' "$T/diff.txt" | awk '$4 != 0' | wc -l)" -eq 2 ] || { cat "$T/diff.txt"; die "MEMIT changed other than two tensors"; }
$ALLOY edit --undo "$T/mout" -o "$T/mundone" 2>/dev/null || die "memit undo failed"
$ALLOY diff $E/base "$T/mundone" --tensors | awk '/^transformer.*mlp.c_proj.weight/ { if ($4 > 1e-5) bad = 1 } END { exit bad }' || die "memit undo"
expect_fail 2 $ALLOY edit "$T/memit.yaml" --stats "$T/st2.h5" -o "$T/x6"
expect_err "needs statistics for each"
expect_fail 2 $ALLOY edit "$T/memit.yaml" --stats "$T/st{}.h5" --layers 2,1 -o "$T/x7"
expect_err "ascending"
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
for x in x1 x2 x3 x4 x5 x6 x7; do [ ! -e "$T/$x" ] || die "$x was written"; done
