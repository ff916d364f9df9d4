#!/usr/bin/env python3
"""The paper's two-tower AlexNet in PyTorch: the reference for crates/model.

Same network, same parameter names as the Rust crate (two explicit towers,
`tower_a.conv1.weight`, ..., `fc8.bias`); the only layout difference is that
the Rust crate stores fully connected weights [in, out] (PyTorch: [out, in]).

Modes:
  (default) --fixture PATH   tiny configuration: weights, input, logits, loss,
                             every gradient, parameters after one and two steps
                             of the paper's SGD -> safetensors (float32; the
                             reference is computed in float64).
  --bench                    CPU train step of the paper net (batch 32,
                             2 threads), prints images/s as the last line.
  --gpu-bench                GPU train step (batch 128), fp32 and TF32
                             (eager; with --compile, torch.compile instead).

Options --grouped (benchmarks): use the equivalent single-module net with
groups=2 convolutions instead of two explicit towers.

Requirements: torch, safetensors (`pip install torch safetensors`).
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # torch convention: alpha / n


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def pool5_size(input_size):
    c1 = out_size(input_size, 11, 4, 2)
    p1 = out_size(c1, 3, 2, 0)
    p2 = out_size(p1, 3, 2, 0)
    return out_size(p2, 3, 2, 0)


class Tower(nn.Module):
    """One tower: per-tower widths; conv3, fc6, fc7 read both towers."""

    def __init__(self, conv, fc, input_size, towers):
        super().__init__()
        c = [x // 2 for x in conv]
        f = fc // 2
        s5 = pool5_size(input_size)
        self.conv1 = nn.Conv2d(3, c[0], 11, stride=4, padding=2)
        self.conv2 = nn.Conv2d(c[0], c[1], 5, padding=2)
        self.conv3 = nn.Conv2d(c[1] * towers, c[2], 3, padding=1)
        self.conv4 = nn.Conv2d(c[2], c[3], 3, padding=1)
        self.conv5 = nn.Conv2d(c[3], c[4], 3, padding=1)
        self.fc6 = nn.Linear(c[4] * s5 * s5 * towers, f)
        self.fc7 = nn.Linear(f * towers, f)


class AlexNetTowers(nn.Module):
    """The paper's net with two explicit towers (names as in the Rust crate)."""

    def __init__(self, conv, fc, num_classes, input_size, dropout=0.5):
        super().__init__()
        self.tower_a = Tower(conv, fc, input_size, 2)
        self.tower_b = Tower(conv, fc, input_size, 2)
        self.fc8 = nn.Linear(fc, num_classes)
        self.lrn = nn.LocalResponseNorm(**LRN)
        self.dropout = dropout

    def forward(self, x):
        ts = (self.tower_a, self.tower_b)
        pool = lambda y: F.max_pool2d(y, 3, 2)
        h = [pool(self.lrn(F.relu(t.conv1(x)))) for t in ts]
        h = [pool(self.lrn(F.relu(t.conv2(y)))) for t, y in zip(ts, h)]
        both = torch.cat(h, 1)  # exchange into conv3
        h = [F.relu(t.conv3(both)) for t in ts]
        h = [F.relu(t.conv4(y)) for t, y in zip(ts, h)]
        h = [pool(F.relu(t.conv5(y))).flatten(1) for t, y in zip(ts, h)]
        both = torch.cat(h, 1)  # exchange into fc6
        h = [F.dropout(F.relu(t.fc6(both)), self.dropout, self.training) for t in ts]
        both = torch.cat(h, 1)  # exchange into fc7
        h = [F.dropout(F.relu(t.fc7(both)), self.dropout, self.training) for t in ts]
        return self.fc8(torch.cat(h, 1))  # exchange into fc8 (on tower A)


class AlexNetGrouped(nn.Module):
    """The same net as one module: groups=2 for conv2, conv4, conv5 (own tower);
    conv1 (both towers see the whole image) and conv3 (reads both) are plain."""

    def __init__(self, conv, fc, num_classes, input_size, dropout=0.5):
        super().__init__()
        s5 = pool5_size(input_size)
        self.conv1 = nn.Conv2d(3, conv[0], 11, stride=4, padding=2)  # both towers read the image
        self.conv2 = nn.Conv2d(conv[0], conv[1], 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(conv[1], conv[2], 3, padding=1)
        self.conv4 = nn.Conv2d(conv[2], conv[3], 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(conv[3], conv[4], 3, padding=1, groups=2)
        self.fc6 = nn.Linear(conv[4] * s5 * s5, fc)
        self.fc7 = nn.Linear(fc, fc)
        self.fc8 = nn.Linear(fc, num_classes)
        self.lrn = nn.LocalResponseNorm(**LRN)
        self.dropout = dropout

    def forward(self, x):
        # With groups=2 the LRN window crosses the tower boundary (channels
        # c-2..c+2 of the concatenation), which the two-tower net does not:
        # apply LRN per half to stay the same network.
        def lrn(y):
            a, b = y.chunk(2, 1)
            return torch.cat([self.lrn(a), self.lrn(b)], 1)

        y = F.max_pool2d(lrn(F.relu(self.conv1(x))), 3, 2)
        y = F.max_pool2d(lrn(F.relu(self.conv2(y))), 3, 2)
        y = F.relu(self.conv3(y))
        y = F.relu(self.conv4(y))
        y = F.max_pool2d(F.relu(self.conv5(y)), 3, 2).flatten(1)
        y = F.dropout(F.relu(self.fc6(y)), self.dropout, self.training)
        y = F.dropout(F.relu(self.fc7(y)), self.dropout, self.training)
        return self.fc8(y)


def grouped_state_from_towers(sd):
    """The documented name mapping: two-tower state dict -> groups=2 state dict
    (torch layouts on both sides). The fc6 input order also matches: the
    flatten of the concatenated channels [A | B] is [A flattened | B flattened]."""
    out = {}
    for layer in ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]:
        for p in ["weight", "bias"]:
            out[f"{layer}.{p}"] = torch.cat(
                [sd[f"tower_a.{layer}.{p}"], sd[f"tower_b.{layer}.{p}"]], 0
            )
    out["fc8.weight"] = sd["fc8.weight"]
    out["fc8.bias"] = sd["fc8.bias"]
    return out


def to_rust_layout(name, t):
    """Rust stores fully connected weights [in, out]. Always a copy: the
    parameters are updated in place later."""
    t = t.detach().clone()
    if ".fc" in name or name.startswith("fc"):
        if name.endswith("weight"):
            return t.t().contiguous()
    return t.contiguous()


def paper_sgd_step(model, velocity, lr, momentum, wd):
    with torch.no_grad():
        for name, p in model.named_parameters():
            v = velocity.setdefault(name, torch.zeros_like(p))
            v.mul_(momentum).add_(p, alpha=-wd * lr).add_(p.grad, alpha=-lr)
            p.add_(v)


TINY = dict(conv=[8, 16, 16, 16, 16], fc=32, num_classes=5, input_size=96, batch=3)


def write_fixture(path, seed):
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    cfg = TINY
    model = AlexNetTowers(cfg["conv"], cfg["fc"], cfg["num_classes"], cfg["input_size"])
    model = model.double().eval()  # eval: no dropout; float64 reference
    # Inputs on the scale of the real data (0..255 minus the mean) so that
    # LRN's sum term matters.
    x = torch.randn(cfg["batch"], 3, cfg["input_size"], cfg["input_size"], dtype=torch.float64) * 80
    labels = torch.randint(0, cfg["num_classes"], (cfg["batch"],))
    # float32-representable starting point: round params and input first.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.float().double())
    x = x.float().double()

    tensors = {"input": x, "labels": labels}
    for name, p in model.named_parameters():
        tensors[f"param.{name}"] = to_rust_layout(name, p.detach())

    # Check the documented name mapping against the groups=2 module.
    grouped = AlexNetGrouped(cfg["conv"], cfg["fc"], cfg["num_classes"], cfg["input_size"])
    grouped = grouped.double().eval()
    grouped.load_state_dict(grouped_state_from_towers(model.state_dict()))

    lr, momentum, wd = 0.01, 0.9, 5e-4
    velocity = {}
    for step in (1, 2):
        model.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        if step == 1:
            with torch.no_grad():
                g_logits = grouped(x)
            diff = (g_logits - logits).abs().max().item()
            assert diff < 1e-9, f"grouped net disagrees with the two-tower net: {diff}"
            tensors["logits"] = logits.detach()
            tensors["loss"] = loss.detach().reshape(1)
            for name, p in model.named_parameters():
                tensors[f"grad.{name}"] = to_rust_layout(name, p.grad)
        paper_sgd_step(model, velocity, lr, momentum, wd)
        for name, p in model.named_parameters():
            tensors[f"step{step}.{name}"] = to_rust_layout(name, p.detach())

    out = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in cfg.items()}
    meta.update(lr=str(lr), momentum=str(momentum), weight_decay=str(wd), seed=str(seed))
    save_file(out, path, metadata=meta)
    n = sum(v.numel() for v in out.values())
    print(f"wrote {path}: {len(out)} tensors, {n} values, loss {loss.item():.6f}")


PAPER = dict(conv=[96, 256, 384, 384, 256], fc=4096, num_classes=1000, input_size=224)


def build(grouped, device):
    cls = AlexNetGrouped if grouped else AlexNetTowers
    return cls(PAPER["conv"], PAPER["fc"], PAPER["num_classes"], PAPER["input_size"]).to(device)


def time_steps(model, batch, steps, warmup, device):
    velocity = {}
    x = torch.randn(batch, 3, 224, 224, device=device) * 50
    y = torch.randint(0, PAPER["num_classes"], (batch,), device=device)
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        paper_sgd_step(model, velocity, 0.01, 0.9, 5e-4)
        return loss

    for _ in range(warmup):
        step()
    if device != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device != "cpu":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return batch * steps / dt, dt / steps


def cpu_bench(args):
    torch.set_num_threads(args.threads)
    model = build(args.grouped, "cpu")
    n = sum(p.numel() for p in model.parameters())
    kind = "groups=2" if args.grouped else "two towers"
    print(f"torch {torch.__version__}, CPU, {args.threads} threads, paper AlexNet ({kind}), "
          f"{n} parameters, batch {args.batch_size}, {args.steps} steps after {args.warmup} warm-up")
    rate, per_step = time_steps(model, args.batch_size, args.steps, args.warmup, "cpu")
    print(f"step {per_step * 1000:.0f} ms")
    print(f"{rate:.2f} images/s")


def gpu_bench(args):
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, batch {args.batch_size}")
    rates = {}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        model = build(args.grouped, "cuda")
        if args.compile:
            model = torch.compile(model)
        rate, per_step = time_steps(model, args.batch_size, args.steps, args.warmup, "cuda")
        label = ("compile-" if args.compile else "") + ("tf32" if tf32 else "fp32")
        rates[label] = rate
        print(f"pytorch {label}: {rate:.1f} images/s ({per_step * 1000:.1f} ms/step)")
    print(json.dumps({"pytorch_images_per_s": rates}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture", default="crates/model/tests/fixtures/tiny.safetensors")
    ap.add_argument("--seed", type=int, default=2012)
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--gpu-bench", action="store_true")
    ap.add_argument("--grouped", action="store_true")
    ap.add_argument("--compile", action="store_true",
                    help="with --gpu-bench: time torch.compile(model) instead of eager")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if args.bench:
        args.batch_size = args.batch_size or 32
        args.steps = args.steps or 5
        cpu_bench(args)
    elif args.gpu_bench:
        args.batch_size = args.batch_size or 128
        args.steps = args.steps or 20
        args.warmup = max(args.warmup, 5)
        gpu_bench(args)
    else:
        write_fixture(args.fixture, args.seed)


if __name__ == "__main__":
    main()
