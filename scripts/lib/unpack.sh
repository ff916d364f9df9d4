# Unpacking what travels compressed to the GPU machine, with `xz` when it is
# there and with Python's lzma and tarfile modules when it is not. Sourced by
# scripts/gpu-check.sh. GPU_CHECK_NO_XZ=1 takes the Python way even where
# `xz` exists (how the tests try it).

have_xz() { [ -z "${GPU_CHECK_NO_XZ:-}" ] && command -v xz >/dev/null 2>&1; }

# unxz_to SRC DST: decompresses the .xz file SRC into DST.
unxz_to() {
    if have_xz; then
        xz -dc "$1" >"$2"
    else
        python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)' "$1" "$2"
    fi
}

# untar_xz ARCHIVE DIR: unpacks the .tar.xz ARCHIVE into the directory DIR.
untar_xz() {
    if have_xz; then
        tar -C "$2" -xJf "$1"
    else
        python3 -c 'import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as t:
    if hasattr(tarfile, "data_filter"):
        t.extractall(sys.argv[2], filter="data")
    else:
        t.extractall(sys.argv[2])' "$1" "$2"
    fi
}
