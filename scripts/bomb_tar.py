#!/usr/bin/env python3
"""Copies an ILSVRC2012_img_train.tar-layout tar (outer tar of per-class
tars) and adds decompression bombs to its first class: half of them JPEGs of
a few hundred bytes whose frame header claims 32000x32000 pixels (a real
small JPEG of the same tar, its SOF0 dimensions patched), half PNGs named
.JPEG whose header claims 20000x20000.

    scripts/bomb_tar.py IN.tar OUT.tar [COUNT]     (COUNT: 20 by default)

For measuring what such files cost `cargo xtask preprocess` (see
benchmarks/preprocess.md, "Hostile input")."""

import io
import struct
import sys
import tarfile
import zlib


def jpeg_bomb(jpeg, w=32000, h=32000):
    b = bytearray(jpeg)
    sof = b.find(b"\xff\xc0")
    assert sof >= 0, "a baseline JPEG"
    b[sof + 5:sof + 7] = struct.pack(">H", h)
    b[sof + 7:sof + 9] = struct.pack(">H", w)
    return bytes(b)


def png_bomb(w=20000, h=20000):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    with tarfile.open(src) as outer, tarfile.open(dst, "w") as out:
        first = True
        for member in outer:
            data = outer.extractfile(member).read()
            if first:
                first = False
                wnid = member.name.removesuffix(".tar")
                inner_in = tarfile.open(fileobj=io.BytesIO(data))
                buf = io.BytesIO()
                with tarfile.open(fileobj=buf, mode="w") as inner:
                    sample = None
                    for m in inner_in:
                        body = inner_in.extractfile(m).read()
                        if sample is None and body[:2] == b"\xff\xd8" and b"\xff\xc0" in body:
                            sample = body
                        add(inner, m.name, body)
                    for k in range(count):
                        bomb = jpeg_bomb(sample) if k % 2 == 0 else png_bomb()
                        add(inner, f"{wnid}_bomb{k}.JPEG", bomb)
                data = buf.getvalue()
            add(out, member.name, data)


if __name__ == "__main__":
    main()
