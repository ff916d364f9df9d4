//! `ops::max_pool_overlapping`: forward against a direct evaluation and
//! Candle's `max_pool2d`; backward against central finite differences (on
//! inputs whose values are distinct, so that small steps do not move the
//! maxima), the first-maximum rule on ties, and the stock-op fallback.

mod ops_support;

use candle_core::{Device, Result, Tensor};
use model::ops;
use ops_support::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Distinct values `0.01 * k` in random order.
fn distinct(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - n as f32 * 0.005).collect();
    v.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn naive(x: &[f32], dims: [usize; 4], k: usize, s: usize) -> Vec<f64> {
    let [n, c, h, w] = dims;
    let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut y = Vec::with_capacity(n * c * ho * wo);
    for p in 0..n * c {
        for oh in 0..ho {
            for ow in 0..wo {
                let mut m = f32::NEG_INFINITY;
                for i in 0..k {
                    for j in 0..k {
                        m = m.max(x[(p * h + oh * s + i) * w + ow * s + j]);
                    }
                }
                y.push(m as f64);
            }
        }
    }
    y
}

const SHAPES: &[([usize; 4], usize, usize)] = &[
    ([2, 3, 13, 13], 3, 2), // 13 -> 6, like pool5
    ([1, 2, 11, 9], 3, 2),  // rectangular, floor mode drops a column
    ([2, 2, 8, 8], 2, 2),   // non-overlapping
    ([1, 1, 7, 7], 3, 1),   // stride 1
    ([3, 23, 9, 11], 3, 2), // 69 planes: several groups of planes, the last one partial
];

#[test]
fn output_sizes_of_the_paper() {
    for (h, ho) in [(55, 27), (27, 13), (13, 6)] {
        let x = Tensor::zeros((1, 1, h, h), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            ops::max_pool_overlapping(&x, 3, 2).unwrap().dims(),
            &[1, 1, ho, ho]
        );
    }
}

#[test]
fn forward_matches_direct_and_candle() {
    for (i, &(dims, k, s)) in SHAPES.iter().enumerate() {
        let x = rand_tensor(&dims, 5 + i as u64);
        let y = ops::max_pool_overlapping(&x, k, s).unwrap();
        assert_close(
            &to_vec(&y),
            &naive(&to_vec(&x), dims, k, s),
            0.0,
            0.0,
            "forward vs direct",
        );
        let candle = x.max_pool2d_with_stride(k, s).unwrap();
        assert_eq!(to_vec(&y), to_vec(&candle), "forward vs candle {dims:?}");
        let stock = ops::max_pool_overlapping_stock(&x, k, s).unwrap();
        assert_eq!(to_vec(&y), to_vec(&stock), "forward vs stock ops {dims:?}");
    }
}

#[test]
fn backward_matches_finite_differences_and_stock() {
    for (i, &(dims, k, s)) in SHAPES.iter().enumerate() {
        let x = distinct(&dims, 30 + i as u64);
        let (ho, wo) = ((dims[2] - k) / s + 1, (dims[3] - k) / s + 1);
        let r = uniform(&[dims[0], dims[1], ho, wo], 50 + i as u64);
        let f = move |t: &[Tensor]| -> Result<Tensor> { ops::max_pool_overlapping(&t[0], k, s) };
        let stock =
            move |t: &[Tensor]| -> Result<Tensor> { ops::max_pool_overlapping_stock(&t[0], k, s) };
        let inputs = [x];
        let got = autograd(&f, &inputs, &r)[0].clone().expect("no gradient");
        // Steps of 1e-3 keep every maximum in place (values are 1e-2 apart).
        let fd = finite_diff(&f, &inputs, 0, &r, 1e-3);
        assert_close(
            &got,
            &fd,
            1e-3,
            1e-3,
            &format!("dx vs finite differences {dims:?}"),
        );
        let want = autograd(&stock, &inputs, &r)[0].clone().unwrap();
        assert_close(
            &got,
            &as_f64(&want),
            1e-6,
            0.0,
            &format!("dx vs stock ops {dims:?}"),
        );
    }
}

#[test]
fn ties_send_the_gradient_to_the_first_maximum() {
    // A constant 5x5 plane: every window is a tie. With 3x3 / 2 the outputs
    // are 2x2 and the first (top-left) element of each window wins.
    let x = Tensor::ones((1, 1, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
    let f = |t: &[Tensor]| -> Result<Tensor> { ops::max_pool_overlapping(&t[0], 3, 2) };
    let g = autograd(&f, &[x], &[1.0, 2.0, 3.0, 4.0])[0]
        .clone()
        .unwrap();
    let mut want = vec![0.0f32; 25];
    want[0] = 1.0;
    want[2] = 2.0;
    want[10] = 3.0;
    want[12] = 4.0;
    assert_eq!(g, want);
}

#[test]
fn rejects_bad_input() {
    let x = rand_tensor(&[1, 1, 2, 2], 1);
    assert!(ops::max_pool_overlapping(&x, 3, 2).is_err());
    assert!(ops::max_pool_overlapping(&x, 2, 0).is_err());
    assert!(ops::max_pool_overlapping(&rand_tensor(&[4, 4], 1), 2, 2).is_err());
}

#[test]
fn nan_wins_its_window_and_takes_the_gradient() {
    // 1x1x5x5 plane of 0..25, 3x3 / 2 -> 2x2. A NaN at row 1, column 3
    // lies only in output (0, 1)'s window (rows 0..3, columns 2..5).
    let mut v: Vec<f32> = (0..25).map(|i| i as f32).collect();
    v[8] = f32::NAN;
    let x = Tensor::from_vec(v, (1, 1, 5, 5), &Device::Cpu).unwrap();
    let y = to_vec(&ops::max_pool_overlapping(&x, 3, 2).unwrap());
    assert_eq!(y[0], 12.0);
    assert!(y[1].is_nan());
    assert_eq!(&y[2..], &[22.0, 24.0]);
    let f = |t: &[Tensor]| -> Result<Tensor> { ops::max_pool_overlapping(&t[0], 3, 2) };
    let g = autograd(&f, &[x], &[1.0, 2.0, 3.0, 4.0])[0]
        .clone()
        .unwrap();
    let mut want = vec![0.0f32; 25];
    want[12] = 1.0;
    want[8] = 2.0;
    want[22] = 3.0;
    want[24] = 4.0;
    assert_eq!(g, want);
}
