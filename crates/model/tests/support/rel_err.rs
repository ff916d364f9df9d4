//! How the model's tests compare a tensor with a reference one.

use candle_core::{DType, Tensor};

/// Relative tolerance against the float64 references: float32 has a 6e-8
/// unit roundoff, and the sums in the network run over thousands of terms.
pub const TOL: f32 = 1e-5;

/// Max absolute difference, relative to the reference's largest magnitude.
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let flat = |t: &Tensor| {
        t.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (got, want) = (flat(got), flat(want));
    let scale = want
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let diff = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}
