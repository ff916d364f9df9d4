//! Arithmetic precision of `f32` matrix products and convolutions on CUDA.
//!
//! `fp32` (the default, the paper's arithmetic) keeps every product in full
//! float32: cuBLAS without reduced-precision reductions and cuDNN
//! convolutions restricted to FMA kernels (`CUDNN_FMA_MATH`, no tensor
//! cores). `tf32` lets both use TF32 tensor cores (10-bit mantissa inputs,
//! float32 accumulation): cuBLAS through Candle's
//! `set_gemm_reduced_precision_f32`, cuDNN through `CUDNN_DEFAULT_MATH`.
//! On the CPU the setting changes nothing.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

/// Precision of `f32` products on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Full float32 everywhere (the default).
    #[default]
    Fp32,
    /// TF32 tensor cores for matrix products and convolutions.
    Tf32,
}

/// A precision name that is neither `fp32` nor `tf32`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision '{0}': expected fp32 or tf32")]
pub struct ParsePrecisionError(pub String);

impl FromStr for Precision {
    type Err = ParsePrecisionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(Self::Fp32),
            "tf32" => Ok(Self::Tf32),
            _ => Err(ParsePrecisionError(s.to_string())),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
        })
    }
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide precision: cuBLAS (Candle's global switch) at
/// once, cuDNN convolutions at their next call (the precision is part of
/// each convolution plan's key).
pub fn set_precision(p: Precision) {
    PRECISION.store(p as u8, Ordering::Relaxed);
    candle_core::cuda::set_gemm_reduced_precision_f32(p == Precision::Tf32);
}

/// The process-wide precision (see [`set_precision`]).
pub fn precision() -> Precision {
    match PRECISION.load(Ordering::Relaxed) {
        0 => Precision::Fp32,
        _ => Precision::Tf32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::Fp32);
        assert_eq!("TF32".parse::<Precision>().unwrap(), Precision::Tf32);
        assert!("bf16".parse::<Precision>().is_err());
        for p in [Precision::Fp32, Precision::Tf32] {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert_eq!(Precision::default(), Precision::Fp32);
    }
}
