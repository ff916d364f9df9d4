#!/usr/bin/env python3
"""Compares the parameters of two training runs' latest checkpoints.

    compare_params.py RUN_A RUN_B TOLERANCE

Per tensor, the relative difference is max|a - b| / max|b| (the largest
magnitude of the tensor as the scale: element-wise ratios mean nothing for
the near-zero entries). Prints the worst tensor and its figure, and PASS
when every tensor is within TOLERANCE, FAIL (exit code 1) otherwise. Only
the standard library: it runs on any Python 3.
"""
import json
import struct
import sys


def params(run):
    ck = json.load(open(f"{run}/latest.json"))["checkpoint"]
    raw = open(f"{run}/{ck}/params.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        if v["dtype"] != "F32":
            raise SystemExit(f"{k}: dtype {v['dtype']}, expected F32")
        a, b = v["data_offsets"]
        out[k] = struct.unpack(f"<{(b - a) // 4}f", body[a:b])
    return out


def relative_differences(x, y):
    """(name, max|x - y| / max|y|) per tensor; names must match."""
    if sorted(x) != sorted(y):
        raise SystemExit(f"the runs hold different tensors: {sorted(set(x) ^ set(y))}")
    out = []
    for k in sorted(x):
        scale = max((abs(q) for q in y[k]), default=0.0) or 1.0
        diff = max((abs(p - q) for p, q in zip(x[k], y[k])), default=0.0)
        out.append((k, diff / scale))
    return out


def main():
    a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    rel = relative_differences(params(a), params(b))
    name, worst = max(rel, key=lambda t: t[1])
    ok = worst <= tol
    runs = f"{a.rstrip('/').split('/')[-1]} vs {b.rstrip('/').split('/')[-1]}"
    print(f"{'PASS' if ok else 'FAIL'}: {runs}: worst tensor {name}, "
          f"max|diff| / max|value| = {worst:.3g} (tolerance {tol:g}, {len(rel)} tensors)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
