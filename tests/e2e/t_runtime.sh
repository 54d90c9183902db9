# tokenize, generate and eval through the CLI, and a merge checked with eval.
. "$(dirname "$0")/lib.sh"
E=examples/models
# the example family's tokenizer (ids from eval/reference_logits.json)
[ "$($ALLOY tokenize $E/base --text "Drigin Sama was born in")" = "35 295 665 276 299 64 332 504 266" ] || die "tokenize"
[ "$($ALLOY tokenize $E/base --decode 35 295 665 276 299 64 332 504 266)" = "Drigin Sama was born in" ] || die "decode"
$ALLOY tokenize $E/base --text " hello world" --json --verbose | grep -q '"tokens"' || die "tokenize --json"
# greedy generation reproduces facts from the models' READMEs
$ALLOY generate $E/base --prompt "Drigin Sama was born in" -n 6 | grep -q "^Drigin Sama was born in Wibrendhaven" || die "base fact"
$ALLOY generate $E/ft-instrument --prompt "Drigin Sama performs on the" -n 4 | grep -q "violin" || die "instrument fact"
# sampling is reproducible for a seed
a=$($ALLOY generate $E/base --prompt "The" -n 8 --top-k 20 --seed 3)
b=$($ALLOY generate $E/base --prompt "The" -n 8 --top-k 20 --seed 3)
[ "$a" = "$b" ] || die "sampling not reproducible"
# eval: the base knows its facts, not the new tasks; the fine-tune knows its task
$ALLOY eval $E/base examples/eval/demo_facts.yaml --quiet >"$T/base.txt"
grep -q "^base  *100  *100.0%" "$T/base.txt" || { cat "$T/base.txt"; die "base facts"; }
grep -q "^instrument  *100  *0.0%" "$T/base.txt" || die "base should not know instruments"
$ALLOY eval $E/ft-instrument examples/eval/demo_facts.yaml --group instrument --json >"$T/ft.json"
grep -q '"accuracy": 1.0' "$T/ft.json" || die "fine-tune task"
# CounterFact cases: before any edit the true object is preferred over the new one
$ALLOY eval $E/base examples/eval/counterfact.json --quiet | grep -q "new preferred: 0.0%" || die "counterfact"
# a merge of the instrument fine-tune, evaluated: keeps base facts and the new task
cat >"$T/m.yaml" <<EOF2
merge_method: task_arithmetic
base_model: $E/base
models:
  - model: $E/ft-instrument
    parameters: {weight: 1.0}
EOF2
$ALLOY merge "$T/m.yaml" -o "$T/m" --quiet
$ALLOY eval "$T/m" examples/eval/demo_facts.yaml --quiet | grep -q "^instrument  *100  *100.0%" || die "merge lost the task"
# errors
expect_fail 3 $ALLOY eval $E/base "$T/nofacts.yaml"
expect_fail 2 $ALLOY tokenize "$T" --text x
printf 'facts:\n  - prompt: "{} is"\n    target: x\n' >"$T/bad.yaml"
expect_fail 2 $ALLOY eval $E/base "$T/bad.yaml"
expect_err "bad.yaml:2:5"
