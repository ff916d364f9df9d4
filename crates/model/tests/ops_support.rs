//! Helpers shared by the `ops_*` tests: seeded random tensors, gradients by
//! central finite differences (loss accumulated in f64) and by Candle's
//! autograd, and element-wise comparison with a stated tolerance.
#![allow(dead_code)]

use candle_core::{Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform values in `[-1, 1)` from `seed`.
pub fn uniform(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A CPU tensor of uniform values in `[-1, 1)`.
pub fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(uniform(shape, seed), shape, &Device::Cpu).unwrap()
}

pub fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `sum(y * r)` accumulated in f64.
pub fn weighted_sum(y: &Tensor, r: &[f32]) -> f64 {
    let y = to_vec(y);
    assert_eq!(y.len(), r.len(), "output and weights differ in length");
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Gradient of `sum(f(inputs) * r)` with respect to `inputs[which]` by
/// central differences with step `eps` (the op runs in f32; the loss is
/// summed in f64).
pub fn finite_diff<F>(f: &F, inputs: &[Tensor], which: usize, r: &[f32], eps: f32) -> Vec<f64>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let base = to_vec(&inputs[which]);
    let shape = inputs[which].dims().to_vec();
    let eval = |values: Vec<f32>| -> f64 {
        let mut args = inputs.to_vec();
        args[which] = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap();
        weighted_sum(&f(&args).unwrap(), r)
    };
    (0..base.len())
        .map(|i| {
            let mut plus = base.clone();
            plus[i] += eps;
            let mut minus = base.clone();
            minus[i] -= eps;
            // The step actually taken in f32.
            let h = plus[i] as f64 - minus[i] as f64;
            (eval(plus) - eval(minus)) / h
        })
        .collect()
}

/// Gradients of `sum(f(inputs) * r)` through Candle's backward pass, one per
/// input (`None` where the gradient store has none).
pub fn autograd<F>(f: &F, inputs: &[Tensor], r: &[f32]) -> Vec<Option<Vec<f32>>>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let args: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&args).unwrap();
    let rt = Tensor::from_vec(r.to_vec(), y.dims(), &Device::Cpu).unwrap();
    let grads = (y * rt).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|v| grads.get(v.as_tensor()).map(to_vec))
        .collect()
}

/// Asserts `|got - want| <= atol + rtol * |want|` element-wise.
pub fn assert_close(got: &[f32], want: &[f64], atol: f64, rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= atol + rtol * w.abs(),
            "{what}: element {i}: got {g}, want {w} (atol {atol}, rtol {rtol})"
        );
    }
}

pub fn as_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
