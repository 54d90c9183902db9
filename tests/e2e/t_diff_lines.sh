# alloy diff and LiNeS through the CLI.
. "$(dirname "$0")/lib.sh"
E=examples/models
# a model against itself: no change anywhere, cosine 1
$ALLOY diff $E/base $E/base --json >"$T/self.json"
grep -q '"mode": "pair"' "$T/self.json" || die "pair mode"
grep -q '"rel": 0.0' "$T/self.json" || die "self rel"
grep -q '"l2": 0.0' "$T/self.json" || die "self l2"
grep -Eq '"rel": [1-9]|"rel": 0\.0*[1-9]' "$T/self.json" && die "nonzero change against itself"
# a fine-tune against its base, per block, with the chart
$ALLOY diff --base $E/base $E/ft-instrument $E/ft-newcities --svg "$T/d.svg" >"$T/d.txt"
grep -q "^pre " "$T/d.txt" && grep -q "^5 " "$T/d.txt" && grep -q "^post " "$T/d.txt" || die "blocks"
grep -q "conflicts" "$T/d.txt" || die "conflict column"
grep -q "<svg" "$T/d.svg" && grep -q "TIES sign conflicts" "$T/d.svg" || die "svg"
# LiNeS endpoints: alpha 1, beta 0 is the fine-tune; alpha 0, beta 0 the base
for ab in "1.0 0.0 ft-instrument" "0.0 0.0 base"; do
    set -- $ab
    cat >"$T/l.yaml" <<EOF2
merge_method: lines
base_model: $E/base
models:
  - model: $E/ft-instrument
parameters: {alpha: $1, beta: $2}
EOF2
    rm -rf "$T/l"
    $ALLOY merge "$T/l.yaml" -o "$T/l" --quiet
    $ALLOY diff $E/$3 "$T/l" --json >"$T/l.json"
    grep -q '"l2": 0.0,' "$T/l.json" || die "lines $1 $2 is not $3"
    grep -Eq '"l2": [0-9.]*[1-9]' "$T/l.json" && die "lines $1 $2 differs from $3"
done
# alpha: auto reports its value
$ALLOY merge examples/lines-ties.yaml -o "$T/lt" 2>"$T/lt.err"
grep -q "LiNeS alpha (auto) = 0\.[0-9]" "$T/lt.err" || { cat "$T/lt.err"; die "alpha auto not reported"; }
# usage and input errors
expect_fail 1 $ALLOY diff $E/base
expect_fail 3 $ALLOY diff $E/base "$T/missing"
expect_err "missing"
