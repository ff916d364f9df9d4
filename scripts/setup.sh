#!/usr/bin/env bash
# Installs the system libraries the workspace builds against, where missing:
# HDF5 (Debian's libhdf5-dev, 1.10), libjpeg-turbo's TurboJPEG API
# (libturbojpeg0-dev, 2.1) and pkg-config. Debian/Ubuntu; uses sudo
# when not run as root. Safe to run again: it does nothing when all is there.
set -euo pipefail
need=()
pkg-config --exists hdf5 2>/dev/null || [ -e /usr/include/hdf5/serial/hdf5.h ] || need+=(libhdf5-dev)
[ -e /usr/include/turbojpeg.h ] || need+=(libturbojpeg0-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
