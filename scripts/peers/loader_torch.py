#!/usr/bin/env python3
"""PyTorch peer of `cargo xtask bench loader`: a torch DataLoader over the same
HDF5 shards doing the same work per image (random 224 crop, horizontal flip
with p=1/2, PCA lighting, mean-image subtraction, float32 CHW), batches of 128.

    python3 scripts/peers/loader_torch.py --data OUT --workers 2 --batches 64

Prints images/s as its last line.
"""

import argparse
import bisect
import glob
import os
import time

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class Shards(Dataset):
    """All images of OUT/<split>/shard-*.h5, opened lazily in each worker."""

    def __init__(self, split_dir, stats_path, crop=224, lighting_std=0.1):
        self.paths = sorted(glob.glob(os.path.join(split_dir, "shard-*.h5")))
        if not self.paths:
            raise SystemExit(f"no shard-*.h5 in {split_dir}")
        self.starts = [0]
        for p in self.paths:
            with h5py.File(p, "r") as f:
                self.starts.append(self.starts[-1] + f["labels"].shape[0])
        with h5py.File(stats_path, "r") as f:
            mean = np.asarray(f["mean_image"], dtype=np.float32)  # HWC
            self.eigvals = np.asarray(f["eigvals"], dtype=np.float64)
            self.eigvecs = np.asarray(f["eigvecs"], dtype=np.float64)  # columns
        self.mean_chw = np.ascontiguousarray(mean.transpose(2, 0, 1))
        self.crop = crop
        self.lighting_std = lighting_std
        self.images = None

    def __len__(self):
        return self.starts[-1]

    def __getitem__(self, index):
        if self.images is None:  # one set of handles per worker process
            files = [h5py.File(p, "r") for p in self.paths]
            self.images = [f["images"] for f in files]
            self.labels = [np.asarray(f["labels"]) for f in files]
        s = bisect.bisect_right(self.starts, index) - 1
        local = index - self.starts[s]
        images = self.images[s]
        h, w = images.shape[1:3]
        c = self.crop
        y = np.random.randint(0, h - c + 1)
        x = np.random.randint(0, w - c + 1)
        # Read only the crop; flip and mean subtraction in one strided pass to CHW float32.
        src = images[local, y:y + c, x:x + c, :].transpose(2, 0, 1)
        mean = self.mean_chw[:, y:y + c, x:x + c]
        if np.random.rand() < 0.5:
            src, mean = src[:, :, ::-1], mean[:, :, ::-1]
        out = np.empty((3, c, c), np.float32)
        np.subtract(src, mean, out=out, dtype=np.float32)
        if self.lighting_std > 0:
            a = np.random.normal(0.0, self.lighting_std, 3)
            out += (255.0 * self.eigvecs @ (a * self.eigvals)).astype(np.float32)[:, None, None]
        return torch.from_numpy(out), int(self.labels[s][local])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="preprocess output directory")
    ap.add_argument("--split", default="train")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=4)
    args = ap.parse_args()

    torch.set_num_threads(1)
    ds = Shards(os.path.join(args.data, args.split), os.path.join(args.data, "stats.h5"))
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        persistent_workers=True, prefetch_factor=2)

    def run(count):
        done = images = 0
        while done < count:
            for images_batch, labels in loader:
                assert images_batch.dtype == torch.float32 and images_batch.shape[1:] == (3, 224, 224)
                images += images_batch.shape[0]
                done += 1
                if done == count:
                    break
        return images

    run(args.warmup)
    t = time.perf_counter()
    n = run(args.batches)
    secs = time.perf_counter() - t
    print(f"{n} images in {secs:.2f} s, {args.workers} workers, batch {args.batch_size}", flush=True)
    print(f"{n / secs:.0f} images/s")


if __name__ == "__main__":
    main()
