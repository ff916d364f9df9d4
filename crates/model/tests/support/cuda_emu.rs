//! The project's CUDA kernels (`model::ops::cuda_plan::KERNEL_SOURCE`, the
//! file `src/ops/cuda/kernels.cu`) compiled as C++ with g++, CUDA's
//! built-ins emulated on CPU threads (`cuda_emu/cuda_emu.h`: blocks one
//! after another, a real thread per thread of a block, `__syncthreads` a
//! barrier, `__shared__` per block, `atomicAdd` atomic), and called through
//! `dlopen`. g++ (C++20) is required: a machine without it fails the tests
//! that use this, as it cannot build the workspace's C parts either.

use std::ffi::{c_void, CString};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use model::ops::cuda_plan::{Launch, KERNEL_SOURCE};

/// The compiled kernels, loaded once per test binary.
pub struct Emu {
    lib: *mut c_void,
}

// SAFETY: the library handle is only used to look up symbols; the emulated
// kernels keep no state between launches besides the launch's own.
unsafe impl Send for Emu {}
unsafe impl Sync for Emu {}

/// The kernels, compiled on first use.
pub fn emu() -> &'static Emu {
    static EMU: OnceLock<Emu> = OnceLock::new();
    EMU.get_or_init(|| compile().unwrap_or_else(|e| panic!("emulated CUDA kernels: {e}")))
}

fn compile() -> Result<Emu, String> {
    let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/cuda_emu");
    // A directory that outlives the test binary's use of the library.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?.keep();
    let kernels = dir.join("kernels.cu");
    std::fs::write(&kernels, KERNEL_SOURCE).map_err(|e| e.to_string())?;
    let unit = dir.join("emu.cpp");
    std::fs::write(
        &unit,
        format!(
            "#include \"{}\"\n#include \"{}\"\n#include \"{}\"\n",
            support.join("cuda_emu.h").display(),
            kernels.display(),
            support.join("wrappers.cpp").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let so = dir.join("libcuda_emu.so");
    let out = Command::new("g++")
        .args(["-std=c++20", "-O1", "-pthread", "-shared", "-fPIC"])
        .args(["-Wall", "-Wextra", "-Werror", "-Wno-unused-function"])
        .arg("-o")
        .arg(&so)
        .arg(&unit)
        .output()
        .map_err(|e| format!("g++ did not run ({e}); install g++ (build-essential)"))?;
    if !out.status.success() {
        return Err(format!(
            "g++ failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = CString::new(so.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a library we just built, with no initialisers beyond the C++ runtime's.
    let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if lib.is_null() {
        return Err(format!("dlopen {} failed", so.display()));
    }
    Ok(Emu { lib })
}

type Dim = *const u32;

impl Emu {
    fn sym(&self, name: &str) -> *mut c_void {
        let c = CString::new(name).expect("symbol name");
        // SAFETY: a valid handle and a NUL-terminated name.
        let p = unsafe { libc::dlsym(self.lib, c.as_ptr()) };
        assert!(!p.is_null(), "no symbol {name}");
        p
    }

    /// `bias_act_f32` over `y [N, O, P]` in place.
    pub fn bias_act(&self, l: Launch, y: &mut [f32], b: &[f32], p: usize, relu: bool) {
        type F = unsafe extern "C" fn(Dim, Dim, *mut f32, *const f32, u64, u64, u64, i32);
        let (g, bl) = dims(l);
        // SAFETY: the wrapper's C signature; the slices outlive the launch.
        unsafe {
            let f: F = std::mem::transmute(self.sym("emu_bias_act_f32"));
            let len = y.len() as u64;
            f(
                g.as_ptr(),
                bl.as_ptr(),
                y.as_mut_ptr(),
                b.as_ptr(),
                len,
                p as u64,
                b.len() as u64,
                relu as i32,
            );
        }
    }

    /// `relu_mask_f32`: `dy` where `y > 0`, else 0.
    pub fn relu_mask(&self, l: Launch, dy: &[f32], y: &[f32]) -> Vec<f32> {
        type F = unsafe extern "C" fn(Dim, Dim, *const f32, *const f32, *mut f32, u64);
        assert_eq!(dy.len(), y.len());
        let mut out = vec![f32::NAN; dy.len()];
        let (g, bl) = dims(l);
        // SAFETY: as in `bias_act`.
        unsafe {
            let f: F = std::mem::transmute(self.sym("emu_relu_mask_f32"));
            f(
                g.as_ptr(),
                bl.as_ptr(),
                dy.as_ptr(),
                y.as_ptr(),
                out.as_mut_ptr(),
                dy.len() as u64,
            );
        }
        out
    }

    /// `bias_grad_f32` of `dy [n, o, p]` (from zero).
    pub fn bias_grad(&self, l: Launch, dy: &[f32], n: usize, o: usize, p: usize) -> Vec<f32> {
        type F = unsafe extern "C" fn(Dim, Dim, *const f32, *mut f32, u32, u32, u64);
        assert_eq!(dy.len(), n * o * p);
        let mut db = vec![0.0f32; o];
        let (g, bl) = dims(l);
        // SAFETY: as in `bias_act`.
        unsafe {
            let f: F = std::mem::transmute(self.sym("emu_bias_grad_f32"));
            f(
                g.as_ptr(),
                bl.as_ptr(),
                dy.as_ptr(),
                db.as_mut_ptr(),
                n as u32,
                o as u32,
                p as u64,
            );
        }
        db
    }

    /// `paper_sgd_f32`: `v` and `w` updated in place.
    #[allow(clippy::too_many_arguments)]
    pub fn paper_sgd(
        &self,
        l: Launch,
        v: &mut [f32],
        w: &mut [f32],
        g: &[f32],
        m: f32,
        wd_lr: f32,
        lr: f32,
    ) {
        type F = unsafe extern "C" fn(Dim, Dim, *mut f32, *mut f32, *const f32, u64, f32, f32, f32);
        assert!(v.len() == w.len() && w.len() == g.len());
        let (gr, bl) = dims(l);
        // SAFETY: as in `bias_act`.
        unsafe {
            let f: F = std::mem::transmute(self.sym("emu_paper_sgd_f32"));
            f(
                gr.as_ptr(),
                bl.as_ptr(),
                v.as_mut_ptr(),
                w.as_mut_ptr(),
                g.as_ptr(),
                v.len() as u64,
                m,
                wd_lr,
                lr,
            );
        }
    }

    /// `normalize_u8_f32`: the f32 input from u8 crops `x [N, 3, crop,
    /// crop]`, the mean image (HWC, `mean_w` wide) and 6 floats of `meta`
    /// per view.
    #[allow(clippy::too_many_arguments)]
    pub fn normalize(
        &self,
        l: Launch,
        x: &[u8],
        mean: &[f32],
        meta: &[f32],
        crop: usize,
        mean_w: usize,
        scale: f32,
    ) -> Vec<f32> {
        type F = unsafe extern "C" fn(
            Dim,
            Dim,
            *const u8,
            *mut f32,
            *const f32,
            *const f32,
            u64,
            u32,
            u32,
            f32,
        );
        let mut out = vec![f32::NAN; x.len()];
        let (g, bl) = dims(l);
        // SAFETY: as in `bias_act`.
        unsafe {
            let f: F = std::mem::transmute(self.sym("emu_normalize_u8_f32"));
            f(
                g.as_ptr(),
                bl.as_ptr(),
                x.as_ptr(),
                out.as_mut_ptr(),
                mean.as_ptr(),
                meta.as_ptr(),
                x.len() as u64,
                crop as u32,
                mean_w as u32,
                scale,
            );
        }
        out
    }
}

fn dims(l: Launch) -> ([u32; 3], [u32; 3]) {
    (
        [l.grid.0, l.grid.1, l.grid.2],
        [l.block.0, l.block.1, l.block.2],
    )
}
