#!/usr/bin/env python3
"""Peer for `cargo xtask bench preprocess`: the same job in Python.

Pillow (with `draft` DCT-domain downscaling for JPEGs) + h5py, N worker
processes. Reads the ImageNet train tar (outer tar of per-class tars,
streamed), scales the shorter side to 256 (LANCZOS), takes the central
256x256 patch, and writes shards with the same layout as the Rust tool:
`images` uint8 [n,256,256,3] chunked one image per chunk, `labels` int64,
`names` UTF-8 strings. Class index = position of the WNID in the sorted
list of inner tar names.

    preprocess_pillow.py run --train-tar T --out DIR [--workers 2] [--images-per-shard 1024]
    preprocess_pillow.py compare OURS_DIR PEER_DIR     # per-pixel difference, by member name

The last line of `run` is `N images/s`.
"""
import argparse
import io
import multiprocessing as mp
import os
import sys
import tarfile
import time

import h5py
import numpy as np
from PIL import Image

SIDE = 256


def to_256(data):
    """Bytes -> 256x256x3 uint8 (shorter side to 256, central crop), or None."""
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        s = min(w, h)
        if im.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4, 1/8 while the result stays >= 256.
            im.draft("RGB", (max(1, w * SIDE // s), max(1, h * SIDE // s)))
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        nw, nh = round(w * SIDE / s), round(h * SIDE / s)
        nw, nh = max(nw, SIDE), max(nh, SIDE)
        im = im.resize((nw, nh), Image.LANCZOS)
        left, top = (nw - SIDE) // 2, (nh - SIDE) // 2
        im = im.crop((left, top, left + SIDE, top + SIDE))
        return np.asarray(im, dtype=np.uint8)
    except Exception:
        return None


def work(item):
    name, label, data = item
    return name, label, to_256(data)


def members(train_tar):
    """(name, label, bytes) in tar order; labels from sorted inner tar names."""
    with tarfile.open(train_tar, "r:") as outer:
        infos = [m for m in outer.getmembers() if m.isfile() and m.name.endswith(".tar")]
    wnids = sorted(os.path.basename(m.name)[:-4] for m in infos)
    index = {w: i for i, w in enumerate(wnids)}
    with tarfile.open(train_tar, "r|") as outer:
        for m in outer:
            if not (m.isfile() and m.name.endswith(".tar")):
                continue
            label = index[os.path.basename(m.name)[:-4]]
            with tarfile.open(fileobj=outer.extractfile(m), mode="r|") as inner:
                for e in inner:
                    if e.isfile():
                        yield os.path.basename(e.name), label, inner.extractfile(e).read()


class ShardWriter:
    def __init__(self, out, per_shard):
        self.out, self.per_shard, self.id = out, per_shard, 0
        self.images, self.labels, self.names = [], [], []

    def add(self, name, label, image):
        self.images.append(image)
        self.labels.append(label)
        self.names.append(name)
        if len(self.images) == self.per_shard:
            self.flush()

    def flush(self):
        if not self.images:
            return
        path = os.path.join(self.out, "shard-%05d.h5" % self.id)
        with h5py.File(path + ".tmp", "w") as f:
            f.create_dataset("images", data=np.stack(self.images), chunks=(1, SIDE, SIDE, 3))
            f.create_dataset("labels", data=np.array(self.labels, dtype=np.int64))
            f.create_dataset("names", data=self.names, dtype=h5py.string_dtype("utf-8"))
        os.replace(path + ".tmp", path)
        self.id += 1
        self.images, self.labels, self.names = [], [], []


def run(args):
    out = os.path.join(args.out, "train")
    os.makedirs(out, exist_ok=True)
    writer = ShardWriter(out, args.images_per_shard)
    t0 = time.time()
    written = skipped = 0
    with mp.Pool(args.workers) as pool:
        for name, label, image in pool.imap(work, members(args.train_tar), chunksize=8):
            if image is None:
                skipped += 1
                continue
            writer.add(name, label, image)
            written += 1
    writer.flush()
    dt = time.time() - t0
    print("written %d images, skipped %d, %.1f s" % (written, skipped, dt))
    print("%.1f images/s" % (written / dt))


def load(out):
    d = {}
    split = os.path.join(out, "train")
    for f in sorted(os.listdir(split)):
        if f.endswith(".h5"):
            with h5py.File(os.path.join(split, f), "r") as h:
                first = h["images"][0] if h["images"].shape[0] else None
                if first is not None:
                    assert first.shape == (SIDE, SIDE, 3) and first.dtype == np.uint8, f
                names = [n.decode() if isinstance(n, bytes) else n for n in h["names"][()]]
                imgs = h["images"][()]
                labels = h["labels"][()]
                for n, im, l in zip(names, imgs, labels):
                    d[n] = (int(l), im)
    return d


def compare(args):
    ours, peer = load(args.ours), load(args.peer)
    common = sorted(set(ours) & set(peer))
    if not common:
        sys.exit("no images in common")
    label_mismatch = sum(ours[n][0] != peer[n][0] for n in common)
    diffs = [np.abs(ours[n][1].astype(np.int16) - peer[n][1].astype(np.int16)) for n in common]
    max_d = max(int(d.max()) for d in diffs)
    mean_d = float(np.mean([d.mean() for d in diffs]))
    p99 = float(np.percentile(np.concatenate([d.ravel() for d in diffs[:50]]), 99))
    print("images: ours %d, peer %d, common %d, label mismatches %d" % (len(ours), len(peer), len(common), label_mismatch))
    print("h5py check: images[0] is a (256, 256, 3) uint8 array in every shard")
    print("per-pixel |ours - peer|: max %d, mean %.3f, 99th percentile %.1f" % (max_d, mean_d, p99))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--train-tar", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--images-per-shard", type=int, default=1024)
    c = sub.add_parser("compare")
    c.add_argument("ours")
    c.add_argument("peer")
    args = p.parse_args()
    run(args) if args.cmd == "run" else compare(args)


if __name__ == "__main__":
    main()
