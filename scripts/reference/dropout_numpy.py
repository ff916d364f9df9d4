#!/usr/bin/env python3
"""Training-mode forward pass (dropout on) of the two-tower AlexNet in NumPy,
float64, with given dropout masks: the reference for
crates/model/tests/dropout_train.rs.

PyTorch's train-mode dropout (`torch.nn.functional.dropout(x, p,
training=True)`, as `scripts/reference/alexnet_torch.py` applies it after
the ReLUs of fc6 and fc7) zeroes each element with probability p and
multiplies the survivors by 1/(1-p); its backward multiplies the gradient by
the same mask. PyTorch draws the mask from its own generator, so to compare
with the Rust network the masks are an input here: `--masks` holds, for each
tower t and layer l in fc6, fc7, `mask.{t}.{l}` ([batch, fc width per
tower], each element 0 or 1/(1-p)), the masks the Rust network draws. The
convolutional part is the NumPy forward pass of scripts/torch_eval.py.

Writes to `--out` (safetensors, float64): `logits`, `loss` (mean
cross-entropy, shape [1]) and the gradients of the loss with respect to the
fully connected layers, the ones dropout acts on: `grad.{t}.fc6.weight`,
`grad.{t}.fc6.bias`, `grad.{t}.fc7.*`, `grad.fc8.*`, fully connected
weights in the Rust crate's [in, out] layout.

    python3 scripts/reference/dropout_numpy.py --params crates/model/tests/fixtures/tiny.safetensors \\
        --masks masks.safetensors --out reference.safetensors

`--params`: `param.<name>` tensors (Rust layouts), `input` [N, 3, S, S] and
`labels` [N], as in the fixture of scripts/reference/alexnet_torch.py.
"""

import argparse
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_eval import CONV, LRN, conv2d, lrn, max_pool  # noqa: E402

TOWERS = ["tower_a", "tower_b"]


def relu(v):
    return np.maximum(v, 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True)
    ap.add_argument("--masks", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    fx = load_file(args.params)
    masks = {k: v.astype(np.float64) for k, v in load_file(args.masks).items()}
    # Rust layouts -> torch layouts: fully connected weights [in, out] -> [out, in].
    p = {}
    for k, v in fx.items():
        if k.startswith("param."):
            name = k[len("param."):]
            v = v.astype(np.float64)
            if ("fc" in name) and name.endswith(".weight"):
                v = v.T
            p[name] = np.ascontiguousarray(v)
    x = fx["input"].astype(np.float64)
    labels = fx["labels"].astype(np.int64)
    n = len(x)

    conv = lambda t, l, v: relu(conv2d(v, p[f"{t}.{l}.weight"], p[f"{t}.{l}.bias"], *CONV[l]))
    fc = lambda name, v: v @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    h = [max_pool(lrn(conv(t, "conv1", x), **LRN)) for t in TOWERS]
    h = [max_pool(lrn(conv(t, "conv2", v), **LRN)) for t, v in zip(TOWERS, h)]
    both = np.concatenate(h, 1)
    h = [conv(t, "conv3", both) for t in TOWERS]
    h = [conv(t, "conv4", v) for t, v in zip(TOWERS, h)]
    h = [max_pool(conv(t, "conv5", v)).reshape(n, -1) for t, v in zip(TOWERS, h)]
    in6 = np.concatenate(h, 1)
    pre6 = [fc(f"{t}.fc6", in6) for t in TOWERS]
    out6 = [relu(z) * masks[f"mask.{t}.fc6"] for t, z in zip(TOWERS, pre6)]
    in7 = np.concatenate(out6, 1)
    pre7 = [fc(f"{t}.fc7", in7) for t in TOWERS]
    out7 = [relu(z) * masks[f"mask.{t}.fc7"] for t, z in zip(TOWERS, pre7)]
    in8 = np.concatenate(out7, 1)
    logits = fc("fc8", in8)

    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    loss = -logp[np.arange(n), labels].mean()

    # Backward through fc8, fc7 and fc6: dropout multiplies the gradient by
    # its mask, ReLU by the indicator of a positive input.
    grads = {}
    g = np.exp(logp)
    g[np.arange(n), labels] -= 1.0
    g /= n
    grads["fc8.weight"] = in8.T @ g
    grads["fc8.bias"] = g.sum(0)
    g_in8 = g @ p["fc8.weight"]
    width = out7[0].shape[1]
    g_in7 = np.zeros_like(in7)
    for i, t in enumerate(TOWERS):
        g_pre = g_in8[:, i * width:(i + 1) * width] * masks[f"mask.{t}.fc7"] * (pre7[i] > 0)
        grads[f"{t}.fc7.weight"] = in7.T @ g_pre
        grads[f"{t}.fc7.bias"] = g_pre.sum(0)
        g_in7 += g_pre @ p[f"{t}.fc7.weight"]
    for i, t in enumerate(TOWERS):
        g_pre = g_in7[:, i * width:(i + 1) * width] * masks[f"mask.{t}.fc6"] * (pre6[i] > 0)
        grads[f"{t}.fc6.weight"] = in6.T @ g_pre
        grads[f"{t}.fc6.bias"] = g_pre.sum(0)

    out = {"logits": logits, "loss": np.array([loss])}
    for k, v in grads.items():
        out[f"grad.{k}"] = np.ascontiguousarray(v)
    save_file(out, args.out)
    print(f"wrote {args.out}: loss {loss:.6f}")


if __name__ == "__main__":
    main()
