# Every real published recipe that alloy parses is planned (--dry-run) against small
# synthetic Llama-shaped checkpoints carrying the tensor names the recipe needs; each
# one either plans fully or fails with a named reason. The counts are printed.
. "$(dirname "$0")/lib.sh"
GEN=${GEN:-build/bench/gen_llama}
[ -x "$GEN" ] || die "missing $GEN (make bench-tools)"
planned=0; unsupported=0; total=0; failed=""
for r in tests/recipes/[0-9]*.yaml; do
    f=$(basename "$r")
    class=$(awk -F'\t' -v f="$f" '$1 == f {print $2}' tests/recipes/EXPECT.tsv)
    case "$class" in valid|valid-unusual|valid-legacy|multi-doc|ignored-keys) ;; *) continue;; esac
    total=$((total + 1))
    M="$T/models/$f"; mkdir -p "$M"
    $ALLOY merge "$r" --list-models 2>/dev/null >"$T/list" || die "$f: --list-models failed"
    # one layer count per recipe: the highest layer any slice reads (8 for whole-model recipes)
    L=$(awk -F'\t' 'BEGIN{m=0} {if ($2+0 > m) m=$2+0} END{print (m ? m : 8)}' "$T/list")
    # hub ids go under --models DIR; local paths (the authors' /home/..., D:/...) are
    # replaced in a copy of the recipe by synthetic checkpoints of the same role
    cp "$r" "$T/recipe.yaml"
    k=0
    while IFS="$(printf '\t')" read -r ref top kind; do
        case "$ref" in
            /*|./*|../*|~*|*:*|*'\'*) k=$((k + 1)); dst="$M/local$k"
                REF="$ref" DST="$dst" perl -0pi -e 's/\Q$ENV{REF}\E/$ENV{DST}/g' "$T/recipe.yaml";;
            *) dst="$M/$ref";;
        esac
        # a LoRA adapter (model+lora) gets a synthetic PEFT adapter for these models
        lora=""; [ "${kind:-}" = lora ] && lora="--lora 4"
        $GEN "$dst" --layers "$L" --dim 16 --ffn 32 --vocab 64 --heads 4 --kv-heads 2 --dtype bf16 $lora \
            --seed "$(printf '%s' "$ref" | cksum | cut -d' ' -f1)" >/dev/null || die "$f: gen $ref"
    done <"$T/list"
    set +e
    $ALLOY merge "$T/recipe.yaml" --dry-run --models "$M" >"$T/plan" 2>"$T/err"; rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        planned=$((planned + 1))
        grep -q "^# document" "$T/plan" || die "$f: no plan printed"
    elif [ $rc -eq 5 ] && grep -q "not supported" "$T/err"; then
        unsupported=$((unsupported + 1))
        echo "$f: $(tail -1 "$T/err")"
    else
        failed="$failed $f"
        echo "$f (rc $rc): $(tail -3 "$T/err")"
    fi
    rm -rf "$M"
done
echo "recipes: $planned of $total planned fully, $unsupported not supported (reason named), failures:${failed:- none}"
[ -z "$failed" ] || die "recipes failed to plan:$failed"
