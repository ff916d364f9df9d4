//! `ops::lrn_max_pool` (the fused pair) against `ops::lrn` followed by
//! `ops::max_pool_overlapping`, forward and backward, and the stock
//! fallback composition.

mod ops_support;

use candle_core::{Result, Tensor};
use model::ops::{self, LrnConfig};
use ops_support::*;

fn strong() -> LrnConfig {
    // A large alpha so that the cross-channel term matters in the checks.
    LrnConfig {
        size: 5,
        alpha: 2.0,
        beta: 0.75,
        k: 1.0,
    }
}

#[test]
fn fused_equals_lrn_then_pool() {
    let shapes: [([usize; 4], usize, usize); 3] = [
        ([2, 7, 13, 13], 3, 2),
        ([3, 4, 11, 9], 3, 2),
        ([1, 40, 9, 9], 2, 2),
    ];
    for cfg in [LrnConfig::default(), strong()] {
        for (i, &(dims, k, s)) in shapes.iter().enumerate() {
            let x = rand_tensor(&dims, 500 + i as u64);
            let fused =
                move |t: &[Tensor]| -> Result<Tensor> { ops::lrn_max_pool(&t[0], &cfg, k, s) };
            let composed = move |t: &[Tensor]| -> Result<Tensor> {
                ops::max_pool_overlapping(&ops::lrn(&t[0], &cfg)?, k, s)
            };
            let stock = move |t: &[Tensor]| -> Result<Tensor> {
                ops::lrn_max_pool_stock(&t[0], &cfg, k, s)
            };
            let inputs = [x];
            let y = fused(&inputs).unwrap();
            let want = composed(&inputs).unwrap();
            assert_eq!(y.dims(), want.dims());
            assert_eq!(to_vec(&y), to_vec(&want), "forward {dims:?} {cfg:?}");
            assert_close(
                &to_vec(&y),
                &as_f64(&to_vec(&stock(&inputs).unwrap())),
                1e-5,
                1e-5,
                "forward vs stock",
            );
            let r = uniform(y.dims(), 600 + i as u64);
            let got = autograd(&fused, &inputs, &r)[0].clone().unwrap();
            let want = autograd(&composed, &inputs, &r)[0].clone().unwrap();
            assert_close(
                &got,
                &as_f64(&want),
                1e-6,
                1e-6,
                &format!("dx {dims:?} {cfg:?}"),
            );
            assert!(got.iter().any(|&v| v != 0.0));
        }
    }
}

#[test]
fn rejects_bad_input() {
    let x = rand_tensor(&[1, 3, 2, 2], 1);
    assert!(ops::lrn_max_pool(&x, &LrnConfig::default(), 3, 2).is_err());
    let zero = LrnConfig {
        size: 0,
        ..LrnConfig::default()
    };
    assert!(ops::lrn_max_pool(&rand_tensor(&[1, 3, 5, 5], 1), &zero, 3, 2).is_err());
}
