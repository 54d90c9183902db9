# A merge recipe ending in an `edits:` stage: merge, then edit the result, one command.
. "$(dirname "$0")/lib.sh"
E=examples/models
cat >"$T/plain.yaml" <<EOF2
merge_method: linear
models:
  - {model: $E/base, parameters: {weight: 0.5}}
  - {model: $E/ft-newcities, parameters: {weight: 0.5}}
dtype: float32
EOF2
{ cat "$T/plain.yaml"; cat <<EOF2
edits:
  layer: 2
  stats: none
  hparams: {v_num_grad_steps: 40, v_weight_decay: 0.1}
  context_templates: ["{}", "The sport of Vabrim. {}", "There is a. {}"]
  edits:
    - {prompt: "{}'s favorite sport is", subject: Bodros Drerir, target_new: fencing, target_true: rowing}
EOF2
} >"$T/staged.yaml"
$ALLOY merge "$T/staged.yaml" --check >"$T/check.txt" || die "--check"
grep -q "then 1 edit" "$T/check.txt" || { cat "$T/check.txt"; die "--check does not mention the stage"; }
$ALLOY merge "$T/staged.yaml" --dry-run | grep -q "then: 1 fact edit (rome)" || die "--dry-run does not show the stage"
$ALLOY merge "$T/plain.yaml" -o "$T/merged" --quiet || die "plain merge"
$ALLOY merge "$T/staged.yaml" -o "$T/out" --quiet 2>"$T/err" || { cat "$T/err"; die "staged merge"; }
for f in edits.json edits.h5 README.md alloy_recipe.yaml config.json tokenizer.json; do
    [ -f "$T/out/$f" ] || die "no $f in the output"
done
grep -q "^edits:" "$T/out/alloy_recipe.yaml" || die "the recorded recipe lacks the stage"
ls -a "$T" | grep -q "alloy-merge" && die "the temporary merge was left behind"
$ALLOY generate "$T/out" --prompt "Bodros Drerir's favorite sport is" -n 2 | grep -q fencing || die "the edit did not take"
# the staged output is the plain merge with one MLP weight edited
$ALLOY diff "$T/merged" "$T/out" --tensors >"$T/diff.txt"
[ "$(grep -E '^transformer\.' "$T/diff.txt" | awk '$4 != 0' | wc -l)" -eq 1 ] || { cat "$T/diff.txt"; die "more than the edited weight differs"; }
grep -Eq "^transformer.h.2.mlp.c_proj.weight +[0-9]+ +[0-9.e-]*[1-9]" "$T/diff.txt" || die "the edited weight is unchanged"
# the stage as a separate facts file, MEMIT
cat >"$T/facts.yaml" <<EOF2
method: memit
layers: [1, 2]
stats: none
hparams: {v_num_grad_steps: 40, v_weight_decay: 0.1, clamp_norm_factor: 4}
edits:
  - {prompt: "{}'s favorite sport is", subject: Bodros Drerir, target_new: fencing}
EOF2
{ cat "$T/plain.yaml"; echo "edits: $T/facts.yaml"; } >"$T/staged2.yaml"
$ALLOY merge "$T/staged2.yaml" -o "$T/out2" --quiet 2>"$T/err" || { cat "$T/err"; die "staged MEMIT merge"; }
grep -q '"method": "memit"' "$T/out2/edits.json" || die "not a MEMIT edit"
# errors in the stage stop the command before the merge, naming the recipe's line
{ cat "$T/plain.yaml"; printf 'edits:\n  - {prompt: "{} is", target_new: x}\n'; } >"$T/bad1.yaml"
expect_fail 2 $ALLOY merge "$T/bad1.yaml" -o "$T/x1"
expect_err "bad1.yaml:7:5: the prompt has {} but no subject"
{ cat "$T/plain.yaml"; printf 'edits: {layers: [2, 1], method: memit, edits: [{prompt: "{} is", subject: A, target_new: x}]}\n'; } >"$T/bad2.yaml"
expect_fail 2 $ALLOY merge "$T/bad2.yaml" -o "$T/x2"
expect_err "ascending"
{ cat "$T/plain.yaml"; printf 'edits: %s/nope.yaml\n' "$T"; } >"$T/bad3.yaml"
expect_fail 3 $ALLOY merge "$T/bad3.yaml" -o "$T/x3"
expect_err "nope.yaml"
{ cat "$T/plain.yaml"; printf 'edits: 42\n---\n'; cat "$T/plain.yaml"; } >"$T/bad4.yaml"
expect_fail 2 $ALLOY merge "$T/bad4.yaml" --check
expect_err "bad4.yaml:6:8: edits: belongs to the last document"
for x in x1 x2 x3; do [ ! -e "$T/$x" ] || die "$x was written"; done
ls -a "$T" | grep -q "alloy-merge" && die "a temporary merge was left behind"
exit 0
