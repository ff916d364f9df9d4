#!/usr/bin/env bash
# The script for a GPU machine, in two calls:
#   STAGE=smoke scripts/gpu-check.sh   (at most 3 minutes) the libraries are
#       found, ops-check passes, and the tiny and alexnet device-checks pass
#       on one device (one stream) and on two towers of one GPU (a stream
#       each). Exit code 1 when anything failed: then do not run the full call.
#   STAGE=full scripts/gpu-check.sh    (the default; fits 10 minutes with
#       BUDGET=540) training images/s of the paper's AlexNet in fp32 and TF32
#       (data on the GPU, and fed by the real loader with its data-wait share),
#       NCCL against no sums, the per-layer breakdown, PyTorch on the same
#       net and card, and the stock Candle operations.
#
# Run from the repository root. What must travel with the working tree: only
# dist/xtask-cuda.xz and dist/libs.tar.xz (both made by scripts/gpu-build.sh;
# the whole dist/ is larger than a call may carry). The script unpacks them
# with xz, or with Python's lzma and tarfile where xz is missing.
#
# Results: $OUT (or ./gpu-results) gets two files, rewritten as the run goes
# so that a run cut short keeps what it measured:
#   summary.txt   a line per step (rc, seconds) and the figures;
#   logs.tar.gz   every step's log (and ldd.txt, the loader-fed metrics.csv),
#                 rewritten after every step (a temporary file, then a rename).
# Every step is time-boxed; the call stays within BUDGET seconds (170 for
# smoke, 540 for full) and skips what no longer fits.
#
# Env: STAGE (full), XTASK (unpacked from dist/xtask-cuda.xz), BUDGET, STEPS
#      (train-step timed steps, 20), BATCH (128), DEVICE=cpu (plumbing test
#      without a GPU: the normal release binary, CPU placements,
#      alexnet-small, tiny step counts).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/unpack.sh
STAGE=${STAGE:-full}
case "$STAGE" in smoke) DEFAULT_BUDGET=170 ;; full) DEFAULT_BUDGET=540 ;;
    *) echo "STAGE must be smoke or full, not '$STAGE'" >&2; exit 2 ;; esac
RES=${OUT:-$PWD/gpu-results}
mkdir -p "$RES"
START=$(date +%s)
BUDGET=${BUDGET:-$DEFAULT_BUDGET}
SUMMARY=$RES/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
# Step logs live here; $RES gets them as one archive.
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-logs.XXXXXX")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK" "$LOGS"' EXIT
archive() {
    tar -C "$LOGS" -czf "$RES/logs.tar.gz.tmp" . && mv -f "$RES/logs.tar.gz.tmp" "$RES/logs.tar.gz"
}

if [ "${DEVICE:-cuda}" = cpu ]; then
    XTASK=${XTASK:-target/release/xtask}
    DEV1=cpu; DEV2=cpu,cpu; DEV_2GPU=""
    MODEL=alexnet-small; BATCH=${BATCH:-8}; STEPS=${STEPS:-2}
    SYNTH=(--classes 4 --train-per-class 24 --val-images 16 --min-side 256 --max-side 320)
    TORCH_MODE=(--bench --batch-size "$BATCH" --steps "$STEPS" --warmup 1)
else
    XTASK=${XTASK:-dist/xtask-cuda}
    DEV1=cuda:0; DEV2=cuda:0,cuda:0; DEV_2GPU=""
    MODEL=alexnet; BATCH=${BATCH:-128}; STEPS=${STEPS:-20}
    # 10 x 640 train images = 50 steps of 128 per epoch; val 512.
    SYNTH=(--classes 10 --train-per-class 640 --val-images 512 --min-side 300 --max-side 500)
    TORCH_MODE=(--gpu-bench --batch-size "$BATCH" --steps "$STEPS")
    # Libraries from the Python wheels (torch's CUDA 13 ones, cuDNN, NCCL);
    # the driver gives libcuda.so.1.
    SP=$(python3 -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
    [ -n "$SP" ] && export LD_LIBRARY_PATH=$SP/nvidia/cu13/lib:$SP/nvidia/cudnn/lib:$SP/nvidia/nccl/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    [ "${GPUS:-0}" -ge 2 ] && DEV_2GPU=cuda:0,cuda:1
fi
# The binary travels compressed (dist/xtask-cuda.xz).
if [ ! -x "$XTASK" ] && [ -f "$XTASK.xz" ]; then
    unxz_to "$XTASK.xz" "$WORK/xtask-cuda" && chmod +x "$WORK/xtask-cuda" && XTASK=$WORK/xtask-cuda
fi
[ -x "$XTASK" ] || { say "no binary at $XTASK (build it with scripts/gpu-build.sh)"; exit 2; }
# HDF5, libjpeg-turbo and their libraries as built against, for a machine
# without them: last on the path, so the machine's own win where present.
if [ -f dist/libs.tar.xz ]; then
    mkdir -p "$WORK/libs" && untar_xz dist/libs.tar.xz "$WORK/libs" &&
        export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$WORK/libs
fi

# step NAME SECONDS CMD...: runs CMD with its output in the log NAME.log,
# killed after SECONDS or when the budget runs out; records rc and time in
# the summary and rewrites the archive.
FAILED=0
step() {
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 15 ]; then say "[$name] SKIPPED (budget spent)"; FAILED=1; return 99; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== [$name] (limit ${limit}s) $*"
    local t0=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    local rc=$?
    local secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    tail -n 4 "$LOGS/$name.log" | sed 's/^/    /'
    say "[$name] rc=$rc ${secs}s$([ $rc = 124 ] && echo ' TIMED OUT')"
    [ $rc = 0 ] || FAILED=1
    archive
    return $rc
}
last_rate() { grep -oE '^[0-9.]+ images/s' "$LOGS/$1.log" 2>/dev/null | tail -1 | cut -d' ' -f1; }

say "gpu-check $STAGE $(date -u +%FT%TZ) on $(hostname), binary $XTASK, budget ${BUDGET}s"
if [ "${DEVICE:-cuda}" != cpu ]; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$SUMMARY"
fi
nproc | sed 's/^/cpu cores: /' | tee -a "$SUMMARY"

# Full float32 for every check (the check sets --precision fp32 semantics
# itself: cuBLAS without TF32, cuDNN convolutions with FMA math;
# NVIDIA_TF32_OVERRIDE=0 on top). `DEV2` gives each tower its own stream;
# --shared-stream puts both on the thread's default stream.
FP32=(env NVIDIA_TF32_OVERRIDE=0)
check() { local name=$1 limit=$2; shift 2; step "$name" "$limit" "${FP32[@]}" "$XTASK" bench device-check "$@"; }
checks_summary() {
    for f in "$LOGS"/check-*.log; do
        [ -e "$f" ] && say "  $(basename "$f" .log): $(grep -E '^placement:|^(PASS|FAIL)' "$f" | tr '\n' ' ')"
    done
}

if [ "$STAGE" = smoke ]; then
    # The libraries: every one the binary links is found, and it starts.
    step libs 20 bash -c 'ldd "$1" | tee "$2"; ! grep -q "not found" "$2" && "$1" --help >/dev/null' \
        libs "$XTASK" "$LOGS/ldd.txt"
    # Each custom operation and the SGD step alone first (localises a failure).
    step check-ops 45 "${FP32[@]}" "$XTASK" bench ops-check --device "$DEV1"
    check check-tiny-one 30 --devices "$DEV1"
    check check-tiny-split 30 --devices "$DEV2"
    check check-alexnet-one 45 --devices "$DEV1" --model alexnet --batch-size 2
    check check-alexnet-split 45 --devices "$DEV2" --model alexnet --batch-size 2
    checks_summary
    if [ $FAILED = 0 ]; then say "smoke: PASS (run STAGE=full next)"; else say "smoke: FAIL (fix before the full call)"; fi
    say "total $(( $(date +%s) - START ))s"
    archive
    exit $FAILED
fi

# ---- The full call ----

# 1. The remaining checks, quick.
if [ "${DEVICE:-cuda}" != cpu ]; then
    check check-tiny-shared-stream 40 --devices "$DEV2" --shared-stream
fi
[ -n "$DEV_2GPU" ] && check check-two-gpus 60 --devices "$DEV_2GPU"

# 2. PyTorch eager on the same net and card (fp32 and TF32).
HAVE_TORCH=$(python3 -c 'import torch' 2>/dev/null && echo 1)
if [ -n "$HAVE_TORCH" ]; then
    step torch 100 python3 scripts/reference/alexnet_torch.py "${TORCH_MODE[@]}"
else
    say "[torch] SKIPPED (python3 has no torch)"
fi

# 3. Candle training step on data already on the device, fp32 and TF32, one
#    device and two towers on a stream each.
tstep() { local name=$1 dev=$2 prec=$3; shift 3
    step "$name" 90 "$XTASK" bench train-step --model "$MODEL" --batch-size "$BATCH" \
        --steps "$STEPS" --warmup 3 --device "$dev" --precision "$prec" "$@"; }
tstep train-step-one-fp32 "$DEV1" fp32
tstep train-step-one-tf32 "$DEV1" tf32
tstep train-step-split-fp32 "$DEV2" fp32
tstep train-step-split-tf32 "$DEV2" tf32
[ -n "$DEV_2GPU" ] && tstep train-step-two-gpus-fp32 "$DEV_2GPU" fp32

# 4. Fed by the real loader: generate, preprocess, train two epochs (the
#    second is the steady state; metrics.csv has img/s and the share of time
#    spent waiting for data; on CUDA the u8 batches are normalised on the
#    device). Data and checkpoints stay in $WORK.
DATA=$WORK/data
step synth 90 "$XTASK" synth --out "$DATA/raw" "${SYNTH[@]}" --no-odd-files --seed 1 &&
    step preprocess 100 "$XTASK" preprocess --train-tar "$DATA/raw/ILSVRC2012_img_train.tar" \
        --val-tar "$DATA/raw/ILSVRC2012_img_val.tar" --devkit "$DATA/raw/ILSVRC2012_devkit_t12.tar.gz" \
        --out "$DATA/shards" --quiet &&
    { step train-loader 150 "$XTASK" train --data "$DATA/shards" --run-dir "$WORK/run" --model "$MODEL" \
        --init pytorch --devices "$DEV1" --batch-size "$BATCH" --epochs 2 --quiet
      cp "$WORK/run/metrics.csv" "$LOGS/train-loader-metrics.csv" 2>/dev/null && archive
      # The loader's ceiling on these shards: f32 output, and the u8 crops
      # that training on CUDA takes.
      step loader-alone 40 "$XTASK" bench loader --data "$DATA/shards" --threads "$(nproc)" \
        --batch-size "$BATCH" --batches 32
      step loader-alone-u8 40 "$XTASK" bench loader --data "$DATA/shards" --threads "$(nproc)" \
        --batch-size "$BATCH" --batches 32 --output u8-nchw
      # NCCL at world size 1 runs the data-parallel path (buckets,
      # ncclAllReduce, the mean) and must give the parameters of the path
      # without sums, within a relative tolerance: each process times its
      # own cuDNN algorithms and the bias gradient adds atomically, so the
      # two runs need not be bit-identical. (On the CPU: the default path
      # against host sums, both without sums at world size 1: the plumbing.)
      if [ "${DEVICE:-cuda}" != cpu ]; then SUMS=(nccl host); else SUMS=(auto host); fi
      for sums in "${SUMS[@]}"; do
          step "sums-$sums" 90 env NCCL_DEBUG=WARN "$XTASK" train --data "$DATA/shards" \
              --run-dir "$WORK/sums-$sums" --model "$MODEL" --init pytorch --devices "$DEV1" \
              --batch-size "$BATCH" --epochs 1 --max-steps 10 --gradient-sums "$sums" --quiet
      done
      step sums-compare 30 python3 scripts/lib/compare_params.py \
          "$WORK/sums-${SUMS[0]}" "$WORK/sums-${SUMS[1]}" 1e-3
    }

# 5. Per-layer breakdown (each layer's forward and backward timed between
#    device synchronisations; medians of 5).
step layers 80 "$XTASK" bench train-step --model "$MODEL" --batch-size "$BATCH" --steps 2 \
    --warmup 1 --device "$DEV1" --layers --layer-reps 5 --phases
step layers-tf32 80 "$XTASK" bench train-step --model "$MODEL" --batch-size "$BATCH" --steps 2 \
    --warmup 1 --device "$DEV1" --layers --layer-reps 5 --phases --precision tf32

# 6. Informative, if time is left: Candle's stock operations (what the
#    custom CUDA operations replace). Candle's cuDNN convolution sets no math
#    type, so on CUDA it may use TF32 even at --precision fp32: it runs as
#    Candle leaves it, then with NVIDIA_TF32_OVERRIDE=0 (true fp32).
step train-step-stock-ops 90 "$XTASK" bench train-step --model "$MODEL" --batch-size "$BATCH" \
    --steps 5 --warmup 2 --device "$DEV1" --stock-ops
if [ "${DEVICE:-cuda}" != cpu ]; then
    step train-step-stock-ops-fp32 90 "${FP32[@]}" "$XTASK" bench train-step --model "$MODEL" \
        --batch-size "$BATCH" --steps 5 --warmup 2 --device "$DEV1" --stock-ops
    [ -n "$HAVE_TORCH" ] && step torch-compile 150 python3 scripts/reference/alexnet_torch.py "${TORCH_MODE[@]}" --compile
fi

# The loader-fed run again with the loader's f32 batches copied as they
# are (ALEXNET_INPUT=host): the data-wait share without the device path.
if [ "${DEVICE:-cuda}" != cpu ] && [ -d "$DATA/shards" ]; then
    step train-loader-host-input 120 env ALEXNET_INPUT=host "$XTASK" train --data "$DATA/shards" \
        --run-dir "$WORK/run-host" --model "$MODEL" --init pytorch --devices "$DEV1" \
        --batch-size "$BATCH" --epochs 2 --quiet
    cp "$WORK/run-host/metrics.csv" "$LOGS/train-loader-host-input-metrics.csv" 2>/dev/null && archive
fi

# Summary: rates, ratios to PyTorch, fraction of the card's peak.
say ""
checks_summary
declare -A RATE
for k in one-fp32 one-tf32 split-fp32 split-tf32 stock-ops stock-ops-fp32; do RATE[$k]=$(last_rate "train-step-$k"); done
say "candle train-step $MODEL batch $BATCH: $DEV1 fp32 ${RATE[one-fp32]:-n/a}, tf32 ${RATE[one-tf32]:-n/a}; $DEV2 fp32 ${RATE[split-fp32]:-n/a}, tf32 ${RATE[split-tf32]:-n/a} images/s"
if [ "${DEVICE:-cuda}" != cpu ]; then
    say "candle stock ops (fp32 asked; cuDNN's default math, TF32 possible) ${RATE[stock-ops]:-n/a}; stock ops with NVIDIA_TF32_OVERRIDE=0 (true fp32) ${RATE[stock-ops-fp32]:-n/a} images/s"
else
    say "candle stock ops ${RATE[stock-ops]:-n/a} images/s"
fi
epoch_rate() { awk -F, 'NR>1{r=$11; w=$12} END{if (r) printf "%.1f images/s, data wait %.1f%%", r, 100*w}' "$1" 2>/dev/null; }
say "candle fed by the loader ($DEV1, last epoch): $(epoch_rate "$LOGS/train-loader-metrics.csv")$([ -s "$LOGS/train-loader-metrics.csv" ] || echo n/a)"
[ -s "$LOGS/train-loader-host-input-metrics.csv" ] &&
    say "  the same with ALEXNET_INPUT=host (f32 batches copied as they are): $(epoch_rate "$LOGS/train-loader-host-input-metrics.csv")"
say "loader alone: f32 $(last_rate loader-alone || true) images/s, u8 $(last_rate loader-alone-u8 || true) images/s"
grep -h -E '^(PASS|FAIL):' "$LOGS/sums-compare.log" 2>/dev/null | tee -a "$SUMMARY"
TJSON=$(cat "$LOGS/torch.log" "$LOGS/torch-compile.log" 2>/dev/null | grep -E '^\{"pytorch_images_per_s"' |
    python3 -c 'import json,sys; r={}; [r.update(json.loads(l)["pytorch_images_per_s"]) for l in sys.stdin]; print(json.dumps(r) if r else "")')
TCPU=$(last_rate torch)
say "pytorch: ${TJSON:-${TCPU:+$TCPU images/s (CPU)}}$([ -z "$TJSON$TCPU" ] && echo n/a)"
NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
python3 scripts/lib/gpu_summary.py "$MODEL" "${NAME:-cpu}" "${TJSON:-}" "${RATE[one-fp32]:-}" "${RATE[one-tf32]:-}" \
    "${RATE[split-fp32]:-}" "${RATE[split-tf32]:-}" | tee -a "$SUMMARY"
say "total $(( $(date +%s) - START ))s"
archive
