#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of the project's own parsers.
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]
#
# TARGET: matv5 | devkit | shard_index | tar | kaggle | hf_tar | hf_parquet |
# layout | dataset | checkpoint | all (each target in turn, SECONDS each). Builds fuzz/ with the sanitizer-coverage passes given by
# hand (a stable toolchain: no `cargo fuzz`, no sanitizers), writes the seed
# corpora from the project's writers into fuzz/corpus/<target>/, and runs
# the target on that corpus, which grows as it finds new coverage. A crash,
# panic, timeout or allocation over fuzz/src/lib.rs's MAX_ALLOCATION leaves
# its input in fuzz/artifacts/<target>/ and exits non-zero; the log is
# fuzz/logs/<target>.log. Re-run one input: fuzz/target/<triple>/release/<target> FILE
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET|all SECONDS [libFuzzer options...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
all=(matv5 devkit shard_index tar kaggle hf_tar hf_parquet layout dataset checkpoint)
if [ "$target" = all ]; then
    targets=("${all[@]}")
else
    case " ${all[*]} " in
        *" $target "*) targets=("$target") ;;
        *) echo "unknown target '$target' (one of: ${all[*]}, all)" >&2; exit 2 ;;
    esac
fi

cd "$(dirname "$0")/../fuzz"
triple=$(rustc -vV | sed -n 's/^host: //p')
# The passes `cargo fuzz` adds, without its nightly-only sanitizer flags.
# `--target` keeps them off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
# A full disk shows up as a tool killed by SIGBUS or an I/O error deep in
# a build script: say so before building, with the space left.
avail_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${avail_kb:-0}" -lt 4000000 ]; then
    echo "fuzz.sh: only $((avail_kb / 1024)) MB free on $(df -P . | awk 'NR == 2 { print $6 }'); the fuzz build needs about 4 GB" >&2
fi
cargo build --release --locked --target "$triple" --bins
bin=${CARGO_TARGET_DIR:-target}/$triple/release
"$bin/seeds" corpus
mkdir -p artifacts logs
for t in "${targets[@]}"; do
    mkdir -p "artifacts/$t"
    echo "== $t: ${seconds}s"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: the
    # process's resident memory.
    set +e
    "$bin/$t" "corpus/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=262144 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "$@" 2>&1 | tee "logs/$t.log" |
        grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^(==|stat::|SUMMARY|artifact_prefix|Test unit written)|panicked|allocation of'
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "$t: libFuzzer exited with $status; see fuzz/logs/$t.log and fuzz/artifacts/$t/" >&2
        exit "$status"
    fi
done
