#!/usr/bin/env bash
# Builds the CUDA `xtask` binary on a machine WITHOUT a GPU or CUDA toolkit, using
# NVIDIA's PyPI wheels (CUDA 13.0, pinned: PTX from a newer nvcc does not load on
# a 580 driver) as the toolkit. The result runs on compute capability 9.0
# (H100/H200) by default.
#
# On a machine with a real CUDA toolkit none of this is needed:
#     cargo build --release -p xtask --features cuda        # or "cuda cudnn"
#
# Usage:  scripts/gpu-build.sh            -> dist/xtask-cuda (stripped), its .xz, and
#                                            dist/libs.tar.xz (HDF5, libjpeg-turbo and their libraries)
# Env:    WARM_ONLY=1 builds only Candle's CUDA crates (a cache for later builds),
#         FEATURES ("cuda cudnn nccl" by default), CUDA_COMPUTE_CAP (90),
#         CUDA_WHEEL_CACHE (~/.cache/cuda13-wheels), CARGO_TARGET_DIR (target-cuda)
# First build: about 15 minutes on 2 cores (Candle's kernels go through nvcc).
set -euo pipefail
cd "$(dirname "$0")/.."
FEATURES=${FEATURES:-cuda cudnn nccl}
CACHE=${CUDA_WHEEL_CACHE:-$HOME/.cache/cuda13-wheels}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-cuda}

# 1. Toolkit wheels (crt and nvvm listed so nvcc's unpinned deps stay at 13.0).
[ -x "$CACHE/venv/bin/pip" ] || python3 -m venv "$CACHE/venv"
"$CACHE/venv/bin/pip" install -q "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl,cublas,curand,nvrtc]==13.0.2" \
    nvidia-cudnn-cu13==9.19.0.56 nvidia-nccl-cu13
NV=$("$CACHE/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia
CU=$NV/cu13

# 2. A CUDA_ROOT that looks like a toolkit: unversioned .so links for the linker.
ROOT=$CACHE/root; mkdir -p "$ROOT/lib/stubs"
for d in bin include nvvm; do ln -sfn "$CU/$d" "$ROOT/$d"; done
for f in "$CU"/lib/lib*.so.* "$NV"/cudnn/lib/libcudnn*.so.* "$NV"/nccl/lib/libnccl*.so.*; do
    [ -e "$f" ] || continue; b=$(basename "$f"); case $b in *builtins*|*.alt.*) continue;; esac
    ln -sfn "$f" "$ROOT/lib/${b%%.so.*}.so"
done
ln -sfn "$NV/cudnn/include" "$ROOT/include-cudnn" 2>/dev/null || true

# 3. libcuda.so comes with the driver, which no wheel ships: a link-time stub.
#    Never put it on the GPU machine's library path.
cargo fetch -q
{ echo '#include <cuda.h>' | gcc -E -P -I"$CU/include" -x c - | grep -oP '\bcu[A-Z]\w*(?=\s*\()'
  grep -hoP 'fn \Kcu[A-Z]\w*(?=\()' "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src/driver/sys/*.rs 2>/dev/null || true
} | sort -u | sed 's/.*/int &(void){return 34;}/' > "$ROOT/lib/stubs/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$ROOT/lib/stubs/libcuda.so" "$ROOT/lib/stubs/cuda_stub.c"

# 4. Build and strip.
export PATH=$ROOT/bin:$PATH CUDA_ROOT=$ROOT CUDA_HOME=$ROOT CUDA_PATH=$ROOT
export CPATH="$NV/cudnn/include${CPATH:+:$CPATH}"
if [ -n "${WARM_ONLY:-}" ]; then   # compile only Candle's CUDA side, e.g. while the code changes
    W=$CARGO_TARGET_DIR/warm; mkdir -p "$W/src"; cp Cargo.lock "$W/"; echo 'fn main() {}' > "$W/src/main.rs"
    v=$(grep -A1 '^name = "candle-core"$' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')
    printf '[package]\nname = "warm"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\ncandle-core = { version = "=%s", features = ["cuda", "cudnn"] }\ncandle-nn = { version = "=%s", features = ["cuda"] }\n' "$v" "$v" > "$W/Cargo.toml"
    # The workspace's profiles too: a different profile (e.g. its debug setting)
    # changes every unit's hash, and the real build would redo Candle's kernels.
    awk '/^\[/ { p = /^\[profile/ } p' Cargo.toml >> "$W/Cargo.toml"
    (cd "$W" && cargo build --release); exit 0
fi
# The NVRTC kernels compile for the target (as the binary compiles them at run time).
LD_LIBRARY_PATH=$CU/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} python3 scripts/lib/nvrtc_check.py \
    "$CU/lib/libnvrtc.so.13" crates/model/src/ops/cuda/kernels.cu \
    "--gpu-architecture=compute_$CUDA_COMPUTE_CAP"
cargo build --release -p xtask --features "$FEATURES"
mkdir -p dist
strip -o dist/xtask-cuda "$CARGO_TARGET_DIR/release/xtask"
xz -kf -T0 dist/xtask-cuda
# The system libraries it links besides glibc and the CUDA ones (HDF5,
# libjpeg-turbo and theirs), for a GPU machine that lacks them:
# dist/libs.tar.xz, which gpu-check.sh puts last on the library path.
LIBS=$(mktemp -d)
ldd dist/xtask-cuda | awk '$3 ~ /^\// {print $3}' |
    grep -vE '/(libc|libm|libdl|librt|libpthread|libresolv|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so' |
    while read -r lib; do cp -L "$lib" "$LIBS/"; done
tar -C "$LIBS" -cJf dist/libs.tar.xz . && rm -rf "$LIBS"
ls -l dist/xtask-cuda dist/xtask-cuda.xz dist/libs.tar.xz
cat <<'MSG'
What travels to the GPU machine: the working tree and dist/xtask-cuda.xz and
dist/libs.tar.xz (not the rest of dist/). There (driver >= 580, Python with
the torch cu13x wheels), from the repository root:
  STAGE=smoke scripts/gpu-check.sh     # at most 3 minutes; exit code 0 = go on
  STAGE=full scripts/gpu-check.sh      # within 540 s
Results in $OUT (or ./gpu-results): summary.txt and logs.tar.gz.
MSG
