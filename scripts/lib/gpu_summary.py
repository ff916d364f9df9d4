#!/usr/bin/env python3
"""The last lines of gpu-check.sh's full call: Candle against PyTorch, and
each rate as TFLOP/s and a share of the card's dense peak.

    gpu_summary.py MODEL CARD_NAME TORCH_JSON ONE_FP32 ONE_TF32 SPLIT_FP32 SPLIT_TF32

Empty arguments are rates that were not measured.
"""
import json
import sys

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
