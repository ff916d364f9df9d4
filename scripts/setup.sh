#!/usr/bin/env bash
# Installs the system libraries the workspace builds against, where missing:
# HDF5 (Debian's libhdf5-dev, 1.10), libjpeg-turbo's TurboJPEG API
# (libturbojpeg0-dev, 2.1), its libjpeg API (libjpeg-dev: libjpeg62-turbo-dev
# on Debian, libjpeg-turbo8-dev on Ubuntu; for the
# loader's region decoder) and pkg-config. Debian/Ubuntu; uses sudo
# when not run as root. Safe to run again: it does nothing when all is there.
#
#   scripts/setup.sh --python   also makes .venv (numpy, h5py, safetensors and
#                               tensorboard from PyPI) for scripts/torch_eval.py
#                               and the tests that read with Python;
#                               installs python3-venv when python3 lacks venv
#   scripts/setup.sh --mpi      also installs OpenMPI (libopenmpi-dev,
#                               openmpi-bin) and libclang-dev, which the `mpi`
#                               feature (multi-process training) builds against
#   scripts/setup.sh --old-cpu  also installs qemu-user, for
#                               scripts/old-cpu-check.sh (tests on an emulated
#                               CPU without AVX)
#   scripts/setup.sh --fuzz     also installs g++, which builds libFuzzer for
#                               scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=0
mpi=0
old_cpu=0
fuzz=0
for arg in "$@"; do
    case "$arg" in
        --python) python=1 ;;
        --mpi) mpi=1 ;;
        --old-cpu) old_cpu=1 ;;
        --fuzz) fuzz=1 ;;
        *) echo "usage: scripts/setup.sh [--python] [--mpi] [--old-cpu] [--fuzz]" >&2; exit 2 ;;
    esac
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
pkg-config --exists hdf5 2>/dev/null || [ -e /usr/include/hdf5/serial/hdf5.h ] || need+=(libhdf5-dev)
[ -e /usr/include/turbojpeg.h ] || need+=(libturbojpeg0-dev)
[ -e /usr/include/jpeglib.h ] || need+=(libjpeg-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
if [ $mpi -eq 1 ]; then
    command -v mpirun >/dev/null || need+=(openmpi-bin)
    pkg-config --exists ompi 2>/dev/null || need+=(libopenmpi-dev)
    # libclang itself: libclang-cpp (C++ API) alone is not what bindgen loads.
    ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev)
fi
if [ $old_cpu -eq 1 ]; then
    command -v qemu-x86_64 >/dev/null || need+=(qemu-user)
fi
if [ $fuzz -eq 1 ]; then
    command -v g++ >/dev/null || command -v clang++ >/dev/null || need+=(g++)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ $python -eq 1 ]; then
    if [ ! -x .venv/bin/python3 ] && ! python3 -m venv .venv >/dev/null 2>&1; then
        # Debian's python3 makes venvs only with python3-venv installed.
        rm -rf .venv
        echo "installing: python3-venv"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    fi
    # Lower bounds only: recent wheels from PyPI (h5py bundles its own HDF5).
    # tensorboard: its own event-file reader checks the files a run writes.
    .venv/bin/python3 -m pip install --quiet --disable-pip-version-check \
        "numpy>=1.24" "h5py>=3.8" "safetensors>=0.4" "tensorboard>=2.14"
    echo "python: $(.venv/bin/python3 -c 'import numpy, h5py, safetensors, tensorboard; print("numpy", numpy.__version__, "h5py", h5py.__version__, "safetensors", safetensors.__version__, "tensorboard", tensorboard.__version__)') in .venv"
fi
