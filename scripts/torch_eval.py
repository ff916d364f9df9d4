#!/usr/bin/env python3
"""Evaluate an alexnet-rs checkpoint in Python: PyTorch reads our checkpoints.

Loads a checkpoint's params.safetensors into the reference PyTorch module
(scripts/reference/alexnet_torch.py: two explicit towers, or with --grouped
one module with groups=2 through the documented name mapping), evaluates the
validation shards read with h5py (centre crop, mean image subtracted, as
`cargo xtask eval`) and prints

    top-1 error X%, top-5 error Y%

as the last line. Without torch (or with --backend numpy) the same loading
and mapping code feeds a NumPy forward pass of the same network (float64),
which needs only numpy, h5py and safetensors (`scripts/setup.sh --python`
makes a venv with them in .venv).

    python3 scripts/torch_eval.py --checkpoint runs/paper --data /data/imagenet-256
"""

import argparse
import json
import os
import sys

import h5py
import numpy as np
from safetensors.numpy import load_file

LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # torch convention: alpha / n
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
CONV = {"conv1": (4, 2), "conv2": (1, 2), "conv3": (1, 1), "conv4": (1, 1), "conv5": (1, 1)}


# ---------------------------------------------------------------- checkpoint


def resolve_checkpoint(path):
    """A run directory (its latest.json), a checkpoint directory, or a file in one."""
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path))
    if os.path.isfile(os.path.join(path, "state.json")):
        return path
    latest = os.path.join(path, "latest.json")
    if os.path.isfile(latest):
        with open(latest) as f:
            return os.path.join(path, json.load(f)["checkpoint"])
    sys.exit(f"{path}: not a checkpoint (no latest.json or state.json)")


def load_checkpoint(path):
    """(state.json as a dict, parameters as float64 arrays in torch layouts).

    The name mapping (benchmarks/model.md): names are the same; fully
    connected weights are stored [in, out] and become torch's [out, in]."""
    ck = resolve_checkpoint(path)
    with open(os.path.join(ck, "state.json")) as f:
        state = json.load(f)
    params = {}
    for name, t in load_file(os.path.join(ck, "params.safetensors")).items():
        t = t.astype(np.float64)
        if ".fc" in name or name.startswith("fc"):
            if name.endswith(".weight"):
                t = t.T
        params[name] = np.ascontiguousarray(t)
    return ck, state, params


def grouped_params(p):
    """Two-tower names -> the single groups=2 module (torch layouts)."""
    out = {}
    for layer in LAYERS:
        for kind in ["weight", "bias"]:
            out[f"{layer}.{kind}"] = np.concatenate(
                [p[f"tower_a.{layer}.{kind}"], p[f"tower_b.{layer}.{kind}"]], 0
            )
    out["fc8.weight"] = p["fc8.weight"]
    out["fc8.bias"] = p["fc8.bias"]
    return out


# ---------------------------------------------------------------- data


def read_shard_images(f, start, stop):
    """Images start..stop of an open shard as uint8 [n, H, W, 3] (RGB).

    The one place here that knows how a shard stores its images (the layout
    is documented in crates/shards/src/lib.rs): the raw u8 `images`
    dataset, or JPEG streams in `jpeg` at `jpeg_offsets`, decoded with
    Pillow (needed for JPEG shards only)."""
    if "jpeg" not in f:
        return f["images"][start:stop]
    import io
    from PIL import Image
    offsets = f["jpeg_offsets"][start:stop + 1]
    blob = f["jpeg"][offsets[0]:offsets[-1]].tobytes()
    base = offsets[0]
    return np.stack([
        np.asarray(Image.open(io.BytesIO(blob[a - base:b - base])).convert("RGB"))
        for a, b in zip(offsets[:-1], offsets[1:])
    ])


def shard_paths(split_dir):
    """The split's shards in id order: `shard-` + at least five digits + `.h5`,
    the file-name rule of crates/shards/src/layout.rs."""
    shards = []
    for n in os.listdir(split_dir):
        digits = n[len("shard-"):-len(".h5")] if n.startswith("shard-") and n.endswith(".h5") else ""
        if len(digits) >= 5 and digits.isdigit() and f"shard-{int(digits):05}.h5" == n:
            shards.append((int(digits), n))
    if not shards:
        sys.exit(f"{split_dir}: no shard-NNNNN.h5 files")
    return [os.path.join(split_dir, n) for _, n in sorted(shards)]


def val_batches(split_dir, mean_image, crop, batch_size):
    """(inputs float64 [n, 3, crop, crop], labels int64 [n]) in stored order:
    the centre crop minus the mean image at the same pixels."""
    h, w = mean_image.shape[:2]
    y0, x0 = (h - crop) // 2, (w - crop) // 2
    mean = mean_image[y0:y0 + crop, x0:x0 + crop].astype(np.float64)
    for path in shard_paths(split_dir):
        with h5py.File(path, "r") as f:
            n = f["labels"].shape[0]
            for s in range(0, n, batch_size):
                e = min(n, s + batch_size)
                img = read_shard_images(f, s, e)
                x = img[:, y0:y0 + crop, x0:x0 + crop].astype(np.float64) - mean
                yield np.ascontiguousarray(x.transpose(0, 3, 1, 2)), f["labels"][s:e].astype(np.int64)


# ---------------------------------------------------------------- NumPy forward


def conv2d(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = win.shape[2], win.shape[3]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)
    y = cols @ w.reshape(o, -1).T + b
    return y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)


def lrn(x, size, alpha, beta, k):
    sq = np.pad(x * x, ((0, 0), (size // 2, (size - 1) // 2), (0, 0), (0, 0)))
    s = sum(sq[:, i:i + x.shape[1]] for i in range(size))
    return x / (k + alpha / size * s) ** beta


def max_pool(x, k=3, s=2):
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s].max(axis=(4, 5))


def numpy_logits(p, state, x):
    """The two-tower (or single-tower) net of crates/model in float64."""
    arch = state["architecture"]
    act = np.tanh if arch.get("activation", "relu") == "tanh" else (lambda v: np.maximum(v, 0))
    towers = ["tower_a"] if arch["single_tower"] else ["tower_a", "tower_b"]
    conv = lambda t, l, v: act(conv2d(v, p[f"{t}.{l}.weight"], p[f"{t}.{l}.bias"], *CONV[l]))
    fc = lambda name, v: v @ p[f"{name}.weight"].T + p[f"{name}.bias"]
    h = [max_pool(lrn(conv(t, "conv1", x), **LRN)) for t in towers]
    h = [max_pool(lrn(conv(t, "conv2", v), **LRN)) for t, v in zip(towers, h)]
    both = np.concatenate(h, 1)  # exchange into conv3
    h = [conv(t, "conv3", both) for t in towers]
    h = [conv(t, "conv4", v) for t, v in zip(towers, h)]
    h = [max_pool(conv(t, "conv5", v)).reshape(len(x), -1) for t, v in zip(towers, h)]
    both = np.concatenate(h, 1)  # exchange into fc6
    h = [act(fc(f"{t}.fc6", both)) for t in towers]
    both = np.concatenate(h, 1)  # exchange into fc7
    h = [act(fc(f"{t}.fc7", both)) for t in towers]
    return fc("fc8", np.concatenate(h, 1))  # fc8 reads both towers


# ---------------------------------------------------------------- torch forward


def torch_model(p, state, grouped):
    """The reference PyTorch module with the checkpoint's parameters."""
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
    import alexnet_torch as ref

    arch = state["architecture"]
    if arch["single_tower"] or arch.get("activation", "relu") != "relu":
        sys.exit("the reference PyTorch module is the two-tower ReLU net; use --backend numpy")
    cls = ref.AlexNetGrouped if grouped else ref.AlexNetTowers
    model = cls(arch["conv_channels"], arch["fc_width"], state["num_classes"], arch["input_size"], arch["dropout"])
    sd = grouped_params(p) if grouped else p
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in sd.items()}, strict=True)
    model.eval()

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x).float()).double().numpy()

    return run


# ---------------------------------------------------------------- evaluation


def rank_of_label(scores, labels):
    """Classes ranked ahead of each label (ties: lower class index first)."""
    t = scores[np.arange(len(labels)), labels][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    return ((scores > t) | ((scores == t) & (idx < labels[:, None]))).sum(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="run directory or checkpoint directory")
    ap.add_argument("--data", help="preprocess output (default: the directory the run trained on)")
    ap.add_argument("--backend", choices=["auto", "torch", "numpy"], default="auto",
                    help="auto: torch when importable, else numpy")
    ap.add_argument("--grouped", action="store_true", help="torch: the single groups=2 module")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--logits", help="also save the logits [n, classes] (float64) to this .npy file")
    args = ap.parse_args()

    ck, state, params = load_checkpoint(args.checkpoint)
    data = args.data or state["data_dir"]
    stats = os.path.join(data, "stats.h5")
    if not os.path.isfile(stats):
        stats = os.path.join(ck, "stats.h5")
    with h5py.File(stats, "r") as f:
        mean_image = f["mean_image"][...]

    backend = args.backend
    if backend == "auto":
        try:
            import torch  # noqa: F401

            backend = "torch"
        except ImportError:
            backend = "numpy"
    if backend == "torch":
        forward = torch_model(params, state, args.grouped)
    else:
        forward = lambda x: numpy_logits(params, state, x)

    images = top1 = top5 = 0
    loss_sum = 0.0
    all_logits = []
    crop = state["architecture"]["input_size"]
    for x, labels in val_batches(os.path.join(data, "val"), mean_image, crop, args.batch_size):
        logits = forward(x)
        rank = rank_of_label(logits, labels)
        images += len(labels)
        top1 += int((rank < 1).sum())
        top5 += int((rank < 5).sum())
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        loss_sum += float(-logp[np.arange(len(labels)), labels].sum())
        if args.logits:
            all_logits.append(logits)
    if args.logits:
        np.save(args.logits, np.concatenate(all_logits, 0))
    if images == 0:
        sys.exit("no validation images")
    print(f"checkpoint {ck} ({state['architecture']['name']}, epoch {state['epochs_done']}), backend {backend}")
    print(f"centre crop: {images} images, {top1} top-1 correct, {top5} top-5 correct, loss {loss_sum / images:.4f}")
    print(f"top-1 error {100 * (images - top1) / images:.2f}%, top-5 error {100 * (images - top5) / images:.2f}%")


if __name__ == "__main__":
    main()
