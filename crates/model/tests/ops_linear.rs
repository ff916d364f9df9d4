//! `ops::linear` (weights `[in, out]`): forward against a direct f64
//! product and `matmul`; backward against central finite differences and
//! Candle's `matmul` autograd.

mod ops_support;

use candle_core::{Result, Tensor};
use model::ops;
use ops_support::*;

fn naive(x: &[f32], w: &[f32], b: &[f32], n: usize, i: usize, o: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * o];
    for r in 0..n {
        for c in 0..o {
            y[r * o + c] = b[c] as f64
                + (0..i)
                    .map(|k| x[r * i + k] as f64 * w[k * o + c] as f64)
                    .sum::<f64>();
        }
    }
    y
}

const SHAPES: &[(usize, usize, usize)] = &[(3, 7, 5), (1, 16, 4), (9, 33, 17)];

/// `x [n, i]`, `w [i, o]`, `b [o]` from consecutive seeds.
fn inputs(n: usize, i: usize, o: usize, seed: u64) -> Vec<Tensor> {
    vec![
        rand_tensor(&[n, i], seed),
        rand_tensor(&[i, o], seed + 1),
        rand_tensor(&[o], seed + 2),
    ]
}

fn ours(t: &[Tensor]) -> Result<Tensor> {
    ops::linear(&t[0], &t[1], &t[2])
}

fn stock(t: &[Tensor]) -> Result<Tensor> {
    ops::linear_stock(&t[0], &t[1], &t[2])
}

#[test]
fn forward_and_backward() {
    for (s, &(n, i, o)) in SHAPES.iter().enumerate() {
        let seed = 70 + 3 * s as u64;
        let t = inputs(n, i, o, seed);
        let y = ours(&t).unwrap();
        assert_eq!(y.dims(), &[n, o]);
        let want = naive(&to_vec(&t[0]), &to_vec(&t[1]), &to_vec(&t[2]), n, i, o);
        assert_close(&to_vec(&y), &want, 1e-5, 1e-5, "forward vs direct");
        let r = uniform(&[n, o], seed + 3);
        let got = autograd(&ours, &t, &r);
        let candle = autograd(&stock, &t, &r);
        for (which, name) in ["x", "w", "b"].iter().enumerate() {
            let g = got[which]
                .as_ref()
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            // Linear in each input: central differences exact up to f32 rounding.
            let fd = finite_diff(&ours, &t, which, &r, 0.25);
            assert_close(
                g,
                &fd,
                1e-3,
                1e-3,
                &format!("d{name} vs finite differences {n}x{i}x{o}"),
            );
            assert_close(
                g,
                &as_f64(candle[which].as_ref().unwrap()),
                1e-5,
                1e-5,
                &format!("d{name} vs candle"),
            );
        }
    }
}

#[test]
fn rejects_out_in_weights() {
    let x = rand_tensor(&[2, 8], 1);
    let w_out_in = rand_tensor(&[3, 8], 2);
    let b = rand_tensor(&[3], 3);
    let err = ops::linear(&x, &w_out_in, &b).unwrap_err().to_string();
    assert!(err.contains("[in, out]"), "{err}");
}

/// Shapes large enough for the sliced products (several weight slices along
/// the reduction and along the columns, uneven last slices) and a batch
/// above the sliced range: forward against the direct sum, gradients
/// against Candle's own matmul backward.
#[test]
fn sliced_and_unsliced_products() {
    for (s, &(n, i, o)) in [(5, 200, 301), (32, 130, 150), (60, 130, 150)]
        .iter()
        .enumerate()
    {
        let seed = 170 + 3 * s as u64;
        let t = inputs(n, i, o, seed);
        let want = naive(&to_vec(&t[0]), &to_vec(&t[1]), &to_vec(&t[2]), n, i, o);
        let what = format!("forward {n}x{i}x{o}");
        assert_close(&to_vec(&ours(&t).unwrap()), &want, 1e-5, 1e-5, &what);
        let r = uniform(&[n, o], seed + 3);
        let got = autograd(&ours, &t, &r);
        let candle = autograd(&stock, &t, &r);
        for (which, name) in ["x", "w", "b"].iter().enumerate() {
            assert_close(
                got[which].as_ref().unwrap(),
                &as_f64(candle[which].as_ref().unwrap()),
                1e-5,
                1e-5,
                &format!("d{name} vs candle {n}x{i}x{o}"),
            );
        }
    }
}
