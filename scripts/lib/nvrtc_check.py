#!/usr/bin/env python3
"""Compiles the project's CUDA kernels with NVRTC, as the CUDA build does at
run time, so that a kernel that NVRTC refuses is found where the binary is
built rather than on the GPU.

    nvrtc_check.py LIBNVRTC KERNELS_CU NVRTC_OPTION...

Prints NVRTC's log, the PTX version and target and the kernels' entry
points; exit code 1 when NVRTC fails. libnvrtc's directory must be on
LD_LIBRARY_PATH (for its builtins library).
"""
import ctypes
import sys


def main():
    lib = ctypes.CDLL(sys.argv[1])
    src = open(sys.argv[2], "rb").read()
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"kernels.cu", 0, None, None) != 0:
        raise SystemExit("nvrtcCreateProgram failed")
    opts = [o.encode() for o in sys.argv[3:]]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    n = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
    log = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetProgramLog(prog, log)
    print(f"nvrtc rc {rc}; log: {log.value.decode().strip() or '(empty)'}")
    if rc != 0:
        sys.exit(1)
    lib.nvrtcGetPTXSize(prog, ctypes.byref(n))
    ptx = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetPTX(prog, ptx)
    lines = ptx.value.decode().splitlines()
    head = [l for l in lines if l.startswith((".version", ".target"))]
    entries = [l.split()[2].split("(")[0] for l in lines if l.startswith(".visible .entry")]
    print(f"{' '.join(head)}; kernels: {' '.join(entries)}")


if __name__ == "__main__":
    main()
