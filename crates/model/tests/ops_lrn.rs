//! `ops::lrn`: forward against a direct f64 evaluation of the
//! `torch.nn.LocalResponseNorm` formula and the stock-op version; backward
//! against central finite differences and Candle's autograd of the stock
//! version. Besides the paper's values, strong-alpha and even-size
//! configurations make the cross-channel term and the window's asymmetry
//! visible to the checks.

mod ops_support;

use candle_core::{Result, Tensor};
use model::ops::{self, LrnConfig};
use ops_support::*;

fn configs() -> Vec<LrnConfig> {
    vec![
        LrnConfig::default(),
        LrnConfig {
            size: 5,
            alpha: 2.0,
            beta: 0.75,
            k: 1.0,
        },
        LrnConfig {
            size: 4,
            alpha: 1.5,
            beta: 0.6,
            k: 0.5,
        },
        LrnConfig {
            size: 3,
            alpha: 3.0,
            beta: 1.3,
            k: 2.0,
        },
    ]
}

/// `b_c = a_c / (k + alpha/n * sum_{j=c-n/2}^{c+(n-1)/2} a_j^2)^beta` in f64.
fn naive(cfg: &LrnConfig, dims: [usize; 4], x: &[f32]) -> Vec<f64> {
    let [n, c, h, w] = dims;
    let hw = h * w;
    let mut y = vec![0.0; x.len()];
    for i in 0..n {
        for ch in 0..c {
            let lo = ch as isize - (cfg.size / 2) as isize;
            let hi = ch as isize + ((cfg.size - 1) / 2) as isize;
            for p in 0..hw {
                let mut sum = 0.0f64;
                for j in lo.max(0)..=hi.min(c as isize - 1) {
                    let a = x[(i * c + j as usize) * hw + p] as f64;
                    sum += a * a;
                }
                let a = x[(i * c + ch) * hw + p] as f64;
                y[(i * c + ch) * hw + p] =
                    a / (cfg.k + cfg.alpha / cfg.size as f64 * sum).powf(cfg.beta);
            }
        }
    }
    y
}

const DIMS: [usize; 4] = [2, 7, 3, 4];

#[test]
fn forward_matches_formula_and_stock_ops() {
    for (i, cfg) in configs().iter().enumerate() {
        // Values up to 3 in magnitude so that the normalisation matters.
        let x = (rand_tensor(&DIMS, 40 + i as u64) * 3.0).unwrap();
        let y = ops::lrn(&x, cfg).unwrap();
        assert_eq!(y.dims(), &DIMS);
        let want = naive(cfg, DIMS, &to_vec(&x));
        assert_close(
            &to_vec(&y),
            &want,
            1e-6,
            1e-5,
            &format!("forward vs formula {cfg:?}"),
        );
        let stock = ops::lrn_stock(&x, cfg).unwrap();
        assert_close(
            &to_vec(&y),
            &as_f64(&to_vec(&stock)),
            1e-6,
            1e-5,
            &format!("forward vs stock {cfg:?}"),
        );
    }
}

/// Tolerance of the gradient checks (step 1e-2 on inputs of magnitude up
/// to 3; the truncation error of central differences is O(step²)).
const ATOL: f64 = 2e-3;
const RTOL: f64 = 5e-3;

#[test]
fn backward_matches_finite_differences_and_stock_autograd() {
    for (i, cfg) in configs().iter().enumerate() {
        let x = (rand_tensor(&DIMS, 60 + i as u64) * 3.0).unwrap();
        let r = uniform(&DIMS, 80 + i as u64);
        let cfg = *cfg;
        let f = move |t: &[Tensor]| -> Result<Tensor> { ops::lrn(&t[0], &cfg) };
        let stock = move |t: &[Tensor]| -> Result<Tensor> { ops::lrn_stock(&t[0], &cfg) };
        let inputs = [x];
        let got = autograd(&f, &inputs, &r)[0]
            .clone()
            .expect("no gradient for x");
        let fd = finite_diff(&f, &inputs, 0, &r, 1e-2);
        assert_close(
            &got,
            &fd,
            ATOL,
            RTOL,
            &format!("dx vs finite differences {cfg:?}"),
        );
        let want = autograd(&stock, &inputs, &r)[0].clone().unwrap();
        assert_close(
            &got,
            &as_f64(&want),
            1e-5,
            1e-4,
            &format!("dx vs stock autograd {cfg:?}"),
        );
    }
}

/// The default configuration is the paper's normalisation, computed here by
/// hand: b_c = a_c / (2 + 1e-4 / 5 * sum of a_j^2 over the 5 channels
/// c-2..=c+2 that exist)^0.75 (alpha divided by n, as the paper's released
/// code and PyTorch do). Values of a few hundred make every constant count.
#[test]
fn default_is_the_papers_normalisation() {
    let a = [100.0f32, 200.0, 300.0, 0.0, -50.0, 10.0, 400.0];
    let x = Tensor::from_slice(&a, (1, a.len(), 1, 1), &candle_core::Device::Cpu).unwrap();
    let got: Vec<f32> = ops::lrn(&x, &LrnConfig::default())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (c, &g) in got.iter().enumerate() {
        let window = c.saturating_sub(2)..(c + 3).min(a.len());
        let sum: f64 = a[window].iter().map(|&v| (v as f64).powi(2)).sum();
        let want = a[c] as f64 / (2.0 + 1e-4 / 5.0 * sum).powf(0.75);
        assert!(
            (g as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
            "channel {c}: {g} vs {want}"
        );
    }
}

#[test]
fn rejects_bad_input() {
    let x = rand_tensor(&[2, 3, 4], 1);
    assert!(ops::lrn(&x, &LrnConfig::default()).is_err());
    let x = rand_tensor(&[1, 3, 2, 2], 1);
    assert!(ops::lrn(
        &x,
        &LrnConfig {
            size: 0,
            ..LrnConfig::default()
        }
    )
    .is_err());
}
