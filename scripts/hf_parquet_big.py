#!/usr/bin/env python3
"""Write one large parquet file in Hugging Face imagenet-1k's schema, with
pyarrow (as Hugging Face writes them), from a Kaggle-style train tree of
photos, repeated under new names until the file holds --gb gigabytes: an
`image` struct (`bytes`, `path` = `<name>_<wnid>.JPEG`) and an int64
`label`, the class's index in the sorted WNIDs, in row groups of 100 rows
(Hugging Face's size for image datasets). Used to measure the memory of
`preprocess --from` on a large file (benchmarks/preprocess.md).

    python3 scripts/hf_parquet_big.py --train DIR/ILSVRC/Data/CLS-LOC/train \
        --out OUT/data/train-00000-of-00001.parquet --gb 1
"""

import argparse
import os

import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_GROUP = 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True, help="DIR/<wnid>/*.JPEG")
    ap.add_argument("--out", required=True)
    ap.add_argument("--gb", type=float, default=1.0)
    args = ap.parse_args()
    wnids = sorted(os.listdir(args.train))
    photos = []
    for label, w in enumerate(wnids):
        for f in sorted(os.listdir(os.path.join(args.train, w))):
            with open(os.path.join(args.train, w, f), "rb") as fh:
                photos.append((w, label, f, fh.read()))
    schema = pa.schema(
        [
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("label", pa.int64()),
        ]
    )
    # Copies of every photo, named `<wnid>_<copy><number>` so that the
    # file is in the canonical order (class, then name), as ImageNet's is.
    total = sum(len(p[3]) for p in photos)
    copies = max(1, -(-int(args.gb * 1e9) // total))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    rows = 0
    with pq.ParquetWriter(args.out, schema, compression="snappy") as out:
        for label, w in enumerate(wnids):
            mine = [p for p in photos if p[1] == label]
            chunk = []
            for copy in range(copies):
                for _, _, f, data in mine:
                    stem, ext = f.rsplit(".", 1)
                    number = stem.rsplit("_", 1)[1]
                    name = f"{w}_{copy:04d}{number}_{w}.{ext}"
                    chunk.append(({"bytes": data, "path": name}, label))
                    if len(chunk) == ROWS_PER_GROUP:
                        write(out, schema, chunk)
                        rows += len(chunk)
                        chunk = []
            if chunk:
                write(out, schema, chunk)
                rows += len(chunk)
    print(f"{args.out}: {os.path.getsize(args.out) / 1e9:.2f} GB, {rows} rows")


def write(out, schema, chunk):
    table = pa.table(
        {"image": [r[0] for r in chunk], "label": [r[1] for r in chunk]}, schema=schema
    )
    out.write_table(table, row_group_size=ROWS_PER_GROUP)


if __name__ == "__main__":
    main()
