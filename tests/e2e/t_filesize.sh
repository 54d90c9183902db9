# Output that cannot be written (file-size limit, like a full disk): a clear error
# naming the file and the cause, exit 3, and no output or temporary left behind.
. "$(dirname "$0")/lib.sh"
(
    ulimit -f 2000    # 1 MB blocks of 512 bytes: the 5.3 MB model cannot be written
    expect_fail 3 $ALLOY convert examples/models/base "$T/out"
    expect_err "write failed: File too large"
    expect_err "model.safetensors"
    expect_fail 3 $ALLOY merge examples/merge-three-tasks.yaml -o "$T/merged" --quiet
    expect_err "File too large"
)
[ -z "$(ls -A "$T" | grep -v -e '^err$' -e '^stdout$')" ] || { ls -a "$T"; die "something was left behind"; }
