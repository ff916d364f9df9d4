#!/usr/bin/env bash
# The one script for a GPU machine: correctness of the CUDA placements against
# the CPU (one device; two towers on a stream each), training images/s of the
# paper's AlexNet in fp32 and TF32 (data on the GPU, and fed by the real
# loader), the per-layer breakdown, and PyTorch on the same net and card.
#
# Run from the repository root with the stripped CUDA binary in dist/ (built
# elsewhere with scripts/gpu-build.sh):
#     scripts/gpu-check.sh
# Everything goes to $OUT (if set) or ./gpu-results: one log per step,
# summary.txt at the end. Every step is time-boxed; the whole run stays
# within BUDGET seconds (default 540) and skips what no longer fits.
#
# Env: XTASK (dist/xtask-cuda), BUDGET (540), STEPS (train-step timed steps,
#      20), BATCH (128), DEVICE=cpu (plumbing test without a GPU: the normal
#      release binary, CPU placements, alexnet-small, tiny step counts).
# Order: the checks and the measurements the goals need first, then what is
# informative (torch.compile, stock Candle operations), so that a short
# budget loses the least.
set -uo pipefail
cd "$(dirname "$0")/.."
RES=${OUT:-$PWD/gpu-results}
mkdir -p "$RES"
START=$(date +%s)
BUDGET=${BUDGET:-540}
SUMMARY=$RES/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

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
    # Libraries from the Python wheels (torch's CUDA 13 ones); the driver gives libcuda.so.1.
    SP=$(python3 -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
    [ -n "$SP" ] && export LD_LIBRARY_PATH=$SP/nvidia/cu13/lib:$SP/nvidia/cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # NCCL (libnccl.so.2) from its wheel, for a binary built with the nccl feature.
    [ -n "$SP" ] && export LD_LIBRARY_PATH=$SP/nvidia/nccl/lib:$LD_LIBRARY_PATH
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    [ "${GPUS:-0}" -ge 2 ] && DEV_2GPU=cuda:0,cuda:1
fi
# The binary may travel compressed (xz -k dist/xtask-cuda: 63 MB -> 8 MB).
if [ ! -x "$XTASK" ] && [ -f "$XTASK.xz" ]; then
    xz -dc "$XTASK.xz" >"${TMPDIR:-/tmp}/xtask-cuda" && chmod +x "${TMPDIR:-/tmp}/xtask-cuda" &&
        XTASK=${TMPDIR:-/tmp}/xtask-cuda
fi
[ -x "$XTASK" ] || { echo "no binary at $XTASK (build it with scripts/gpu-build.sh)"; exit 2; }
# HDF5, libjpeg-turbo and their libraries as built against, for a machine
# without them: last on the path, so the machine's own win where present.
if [ -f dist/libs.tar.xz ]; then
    BUNDLED=$(mktemp -d "${TMPDIR:-/tmp}/xtask-libs.XXXXXX") && tar -C "$BUNDLED" -xJf dist/libs.tar.xz &&
        export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$BUNDLED
fi

# step NAME SECONDS CMD...: runs CMD with its output in $RES/NAME.log, killed
# after SECONDS or when the overall budget runs out; records rc and time.
step() {
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 15 ]; then say "[$name] SKIPPED (budget spent)"; return 99; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== [$name] (limit ${limit}s) $*"
    local t0=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$RES/$name.log" 2>&1
    local rc=$?
    local secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    tail -n 4 "$RES/$name.log" | sed 's/^/    /'
    say "[$name] rc=$rc ${secs}s$([ $rc = 124 ] && echo ' TIMED OUT')"
    return $rc
}
last_rate() { grep -oE '^[0-9.]+ images/s' "$RES/$1.log" 2>/dev/null | tail -1 | cut -d' ' -f1; }

say "gpu-check $(date -u +%FT%TZ) on $(hostname), binary $XTASK, budget ${BUDGET}s"
if [ "${DEVICE:-cuda}" != cpu ]; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$SUMMARY"
    ldd "$XTASK" | grep -E 'not found|cuda|cublas|curand|nvrtc|cudnn|nccl' >"$RES/ldd.txt" 2>&1
    grep -q 'not found' "$RES/ldd.txt" && { say "missing libraries:"; cat "$RES/ldd.txt" | tee -a "$SUMMARY"; }
fi
nproc | sed 's/^/cpu cores: /' | tee -a "$SUMMARY"

# 1. Correctness against the CPU. Every check runs in full float32 (the
#    check sets --precision fp32 semantics itself: cuBLAS without TF32,
#    cuDNN convolutions with FMA math; NVIDIA_TF32_OVERRIDE=0 on top).
#    `DEV2` gives each tower its own stream; --shared-stream puts both on
#    the thread's default stream.
FP32=(env NVIDIA_TF32_OVERRIDE=0)
check() { local name=$1 limit=$2; shift 2; step "$name" "$limit" "${FP32[@]}" "$XTASK" bench device-check "$@"; }
# Each custom operation and the SGD step alone first (localises a failure).
step check-ops 60 "${FP32[@]}" "$XTASK" bench ops-check --device "${DEV1%%,*}"
check check-tiny-one 60 --devices "$DEV1"
check check-tiny-split 60 --devices "$DEV2"
if [ "${DEVICE:-cuda}" != cpu ]; then
    check check-tiny-shared-stream 60 --devices "$DEV2" --shared-stream
fi
check check-small-one 90 --devices "$DEV1" --model alexnet-small --batch-size 2
check check-small-split 90 --devices "$DEV2" --model alexnet-small --batch-size 2
check check-alexnet-one 90 --devices "$DEV1" --model alexnet --batch-size 2
check check-alexnet-split 90 --devices "$DEV2" --model alexnet --batch-size 2
[ -n "$DEV_2GPU" ] && check check-two-gpus 60 --devices "$DEV_2GPU"
for f in "$RES"/check-*.log; do say "  $(basename "$f" .log): $(grep -E '^placement:|^(PASS|FAIL)' "$f" | tr '\n' ' ')"; done

# 2. PyTorch eager on the same net and card (fp32 and TF32): quick.
HAVE_TORCH=$(python3 -c 'import torch' 2>/dev/null && echo 1)
if [ -n "$HAVE_TORCH" ]; then
    step torch 120 python3 scripts/reference/alexnet_torch.py "${TORCH_MODE[@]}"
else
    say "[torch] SKIPPED (python3 has no torch)"
fi

# 3. Candle training step on data already on the device, fp32 and TF32, one
#    device and two towers on a stream each.
tstep() { local name=$1 dev=$2 prec=$3; shift 3
    step "$name" 150 "$XTASK" bench train-step --model "$MODEL" --batch-size "$BATCH" \
        --steps "$STEPS" --warmup 3 --device "$dev" --precision "$prec" "$@"; }
tstep train-step-one-fp32 "$DEV1" fp32
tstep train-step-one-tf32 "$DEV1" tf32
tstep train-step-split-fp32 "$DEV2" fp32
tstep train-step-split-tf32 "$DEV2" tf32
[ -n "$DEV_2GPU" ] && tstep train-step-two-gpus-fp32 "$DEV_2GPU" fp32

# 4. Fed by the real loader: generate, preprocess, train two epochs (the
#    second is the steady-state rate; metrics.csv has img/s and the share of
#    time spent waiting for data). Data and checkpoints stay out of $RES.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
DATA=$WORK/data
step synth 120 "$XTASK" synth --out "$DATA/raw" "${SYNTH[@]}" --no-odd-files --seed 1 &&
    step preprocess 150 "$XTASK" preprocess --train-tar "$DATA/raw/ILSVRC2012_img_train.tar" \
        --val-tar "$DATA/raw/ILSVRC2012_img_val.tar" --devkit "$DATA/raw/ILSVRC2012_devkit_t12.tar.gz" \
        --out "$DATA/shards" --quiet &&
    { step train-loader 200 "$XTASK" train --data "$DATA/shards" --run-dir "$WORK/run" --model "$MODEL" \
        --init pytorch --devices "$DEV1" --batch-size "$BATCH" --epochs 2 --quiet
      cp "$WORK/run/metrics.csv" "$RES/train-loader-metrics.csv" 2>/dev/null
      step loader-alone 60 "$XTASK" bench loader --data "$DATA/shards" --threads "$(nproc)" \
        --batch-size "$BATCH" --batches 32
      # NCCL at world size 1 runs the data-parallel path (buckets, ncclAllReduce,
      # the mean) and must give the parameters of the path without sums.
      [ "${DEVICE:-cuda}" != cpu ] && for sums in nccl host; do
          step "sums-$sums" 120 "$XTASK" train --data "$DATA/shards" --run-dir "$WORK/sums-$sums" \
              --model "$MODEL" --init pytorch --devices "$DEV1" --batch-size "$BATCH" --epochs 1 \
              --max-steps 10 --gradient-sums "$sums" --quiet
      done
      [ "${DEVICE:-cuda}" != cpu ] && step sums-compare 30 python3 - "$WORK/sums-nccl" "$WORK/sums-host" <<'PY'
import json, struct, sys
def params(run):
    ck = json.load(open(f"{run}/latest.json"))["checkpoint"]
    raw = open(f"{run}/{ck}/params.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n]); body = raw[8 + n:]
    out = {}
    for k, v in head.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]
        out[k] = struct.unpack(f"<{(b - a) // 4}f", body[a:b])
    return out
x, y = params(sys.argv[1]), params(sys.argv[2])
worst = max(abs(p - q) for k in x for p, q in zip(x[k], y[k]))
print(f"{'PASS' if worst <= 1e-6 else 'FAIL'}: NCCL (world size 1) vs no sums after 10 steps: max |diff| {worst:.3g}")
PY
    }
rm -rf "$WORK"

# 5. Per-layer breakdown (each layer's forward and backward timed between
#    device synchronisations; medians of 5).
step layers 120 "$XTASK" bench train-step --model "$MODEL" --batch-size "$BATCH" --steps 2 \
    --warmup 1 --device "$DEV1" --layers --layer-reps 5 --phases
step layers-tf32 120 "$XTASK" bench train-step --model "$MODEL" --batch-size "$BATCH" --steps 2 \
    --warmup 1 --device "$DEV1" --layers --layer-reps 5 --phases --precision tf32

# 6. Informative, if time is left: torch.compile, and Candle's stock
#    operations (what the custom CUDA operations replace).
if [ -n "$HAVE_TORCH" ] && [ "${DEVICE:-cuda}" != cpu ]; then
    step torch-compile 180 python3 scripts/reference/alexnet_torch.py "${TORCH_MODE[@]}" --compile
fi
step train-step-stock-ops 120 "$XTASK" bench train-step --model "$MODEL" --batch-size "$BATCH" \
    --steps 5 --warmup 2 --device "$DEV1" --stock-ops

# Summary: rates, ratios to PyTorch, fraction of the card's peak.
say ""
declare -A RATE
for k in one-fp32 one-tf32 split-fp32 split-tf32 stock-ops; do RATE[$k]=$(last_rate "train-step-$k"); done
say "candle train-step $MODEL batch $BATCH: $DEV1 fp32 ${RATE[one-fp32]:-n/a}, tf32 ${RATE[one-tf32]:-n/a}; $DEV2 fp32 ${RATE[split-fp32]:-n/a}, tf32 ${RATE[split-tf32]:-n/a}; stock ops fp32 ${RATE[stock-ops]:-n/a} images/s"
LA=$(last_rate loader-alone)
EPOCH=$(awk -F, 'NR>1{r=$11; w=$12} END{if (r) printf "%.1f images/s, data wait %.1f%%", r, 100*w}' \
    "$RES/train-loader-metrics.csv" 2>/dev/null)
say "candle fed by the loader ($DEV1, last epoch): ${EPOCH:-n/a}; loader alone: ${LA:-n/a} images/s"
TJSON=$(cat "$RES/torch.log" "$RES/torch-compile.log" 2>/dev/null | grep -E '^\{"pytorch_images_per_s"' |
    python3 -c 'import json,sys; r={}; [r.update(json.loads(l)["pytorch_images_per_s"]) for l in sys.stdin]; print(json.dumps(r) if r else "")')
TCPU=$(last_rate torch)
say "pytorch: ${TJSON:-${TCPU:+$TCPU images/s (CPU)}}$([ -z "$TJSON$TCPU" ] && echo n/a)"
NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
python3 - "$MODEL" "${NAME:-cpu}" "${TJSON:-}" "${RATE[one-fp32]:-}" "${RATE[one-tf32]:-}" \
    "${RATE[split-fp32]:-}" "${RATE[split-tf32]:-}" <<'PY' | tee -a "$SUMMARY"
import json, sys
model, name, tjson = sys.argv[1:4]
candle = {k: float(v) for k, v in zip(
    ["one-fp32", "one-tf32", "split-fp32", "split-tf32"], sys.argv[4:8]) if v}
# Forward multiply-adds of the paper net at 224 (conv1 pad 2, grouped conv2/4/5):
# conv1 105.4M, conv2 223.9M, conv3 149.5M, conv4 112.1M, conv5 74.8M, fc 58.6M
# = 724M MACs = 1.45 GFLOPs; a training step is about 3x (forward + two
# backward products): 4.35 GFLOPs per image.
flops = 4.35e9 if model == "alexnet" else None
# Dense peaks (TFLOP/s): fp32 on CUDA cores, TF32 on tensor cores.
peaks = {"H100 PCIe": (51, 378), "H100 NVL": (60, 418), "H100": (67, 494), "H200": (67, 494)}
peak = next((v for k, v in peaks.items() if k in name), None)
torch_rates = json.loads(tjson) if tjson else {}
for k, r in candle.items():
    prec = k.split("-")[1]
    for label in (prec, "compile-" + prec):
        if label in torch_rates:
            print(f"candle {k} / pytorch {label}: {r / torch_rates[label]:.2f}")
rows = [(f"candle {k}", v) for k, v in candle.items()] + \
       [(f"pytorch {k}", v) for k, v in torch_rates.items()]
for label, r in rows:
    if r and flops and peak:
        tf = r * flops / 1e12
        print(f"{label}: {tf:.1f} TFLOP/s = {100 * tf / peak[0]:.0f}% of {name} fp32 peak "
              f"({peak[0]}), {100 * tf / peak[1]:.0f}% of TF32 peak ({peak[1]})")
PY
say "total $(( $(date +%s) - START ))s; logs in $RES"
