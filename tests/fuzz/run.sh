#!/bin/bash
# Run every fuzz target built in BUILD_DIR for SECONDS each, one after the
# other, each starting from a fresh copy of its seed corpus (so every seed,
# including each saved crash reproducer, is replayed first).
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
#
# Prints "fuzz_X: N executions in S s" per target. Exits non-zero when a
# target crashes, leaks, times out or runs out of memory; the input that did
# it is kept under BUILD_DIR/tests/fuzz/artifacts/ and its path printed, and
# the whole log under BUILD_DIR/tests/fuzz/logs/.
set -u

if [ $# -lt 2 ] || ! [ "$2" -gt 0 ] 2>/dev/null; then
    echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
    exit 2
fi
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
bindir=$build/tests/fuzz
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_http fuzz_ws fuzz_json fuzz_config)

# UndefinedBehaviorSanitizer only prints by default: make it a failure too.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"

artifacts=$bindir/artifacts
logs=$bindir/logs
mkdir -p "$artifacts" "$logs" || exit 2
artifacts=$(cd "$artifacts" && pwd)
logs=$(cd "$logs" && pwd)

status=0
ran=0
for t in "${targets[@]}"; do
    exe=$bindir/$t
    if [ ! -x "$exe" ]; then
        echo "$t: not built (configure with CC=clang-14 meson setup ... -Dfuzzing=true)"
        status=1
        continue
    fi
    corpus=$(mktemp -d "${TMPDIR:-/tmp}/chatd-$t-corpus-XXXXXX") || exit 2
    if [ -d "$here/corpus/$t" ]; then
        cp -R "$here/corpus/$t/." "$corpus/"
    fi
    log=$logs/$t.log
    start=$(date +%s)
    "$exe" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$t-" "$corpus" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    rm -rf "$corpus"
    ran=$((ran + 1))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "$t: ${execs:-0} executions in $((end - start)) s"
    if [ $rc -ne 0 ]; then
        status=1
        echo "$t: FAILED (libFuzzer exit status $rc); log: $log"
        # The sanitizer's report, then where the input that did it was kept.
        grep -E -A 40 '^==[0-9]+==ERROR|^SUMMARY|runtime error|fuzz world:|ERROR: libFuzzer' "$log" |
            head -n 60 | sed "s/^/    /"
        grep -E 'Test unit written to|crash-|leak-|timeout-|oom-' "$log" |
            sed -n 's/.*Test unit written to /    input kept: /p'
    fi
done

[ $ran -eq 0 ] && status=1
exit $status
