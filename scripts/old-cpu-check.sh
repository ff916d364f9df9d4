#!/usr/bin/env bash
# Runs the tests of the hot loops on an emulated CPU without AVX, AVX2, FMA
# or AVX-512 (QEMU user mode, `-cpu Nehalem`: SSE4.2 at most; QEMU refuses
# instructions the model lacks with SIGILL). The workspace is built without
# `target-cpu`: every wide-vector loop is chosen at run time, so a default
# build must pass here exactly as on the build machine.
#
#   scripts/old-cpu-check.sh [extra cargo flags, e.g. --features xtask/mpi]
#
# Needs qemu-user (`scripts/setup.sh --old-cpu`). Builds the test binaries
# with the flags given (use the same flags as the main test run, so that
# nothing is rebuilt), then runs the loader's, preprocess's and the model
# CPU kernels' tests under the emulator (about a minute on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${OLD_CPU_MODEL:-Nehalem}
command -v qemu-x86_64 >/dev/null || {
    echo "qemu-x86_64 not found: run scripts/setup.sh --old-cpu" >&2
    exit 2
}
# Test targets whose code has run-time-dispatched loops.
targets="loader augment encodings order preprocess decode ops_conv ops_lrn ops_pool ops_lrn_pool"
list=$(cargo test --release --workspace "$@" --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
wanted = set(sys.argv[1].split())
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = m["target"]["name"]
        kinds = m["target"]["kind"]
        # A library target is named after its crate; integration tests by file.
        if name in wanted and ("lib" in kinds or "test" in kinds):
            print(name, m["executable"])
' "$targets")
[ -n "$list" ] || { echo "no test binaries found" >&2; exit 1; }
failed=0
while read -r name exe; do
    start=$(date +%s)
    if qemu-x86_64 -cpu "$model" "$exe" --test-threads 2 -q >"/tmp/old-cpu-$name.log" 2>&1; then
        echo "ok   $name ($(( $(date +%s) - start )) s) $(grep -h 'test result' "/tmp/old-cpu-$name.log" | tail -1)"
    else
        echo "FAIL $name: see /tmp/old-cpu-$name.log"
        tail -20 "/tmp/old-cpu-$name.log"
        failed=1
    fi
done <<<"$list"
exit $failed
