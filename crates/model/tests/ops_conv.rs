//! `ops::conv2d`: forward against a direct f64 convolution and Candle's
//! `conv2d`; backward against central finite differences and Candle's own
//! conv backward; `input_grad = false` leaves no gradient for the input.

mod ops_support;

use candle_core::{Result, Tensor};
use model::ops;
use ops_support::*;

/// One test geometry: x [n, c, h, w], w [o, c, k, k].
#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

const CASES: &[Case] = &[
    // conv1-like: large kernel, stride 4, padding 2
    Case {
        n: 3,
        c: 3,
        h: 23,
        w: 23,
        o: 4,
        k: 11,
        stride: 4,
        pad: 2,
    },
    // conv2-like: 5x5, padding 2
    Case {
        n: 2,
        c: 3,
        h: 7,
        w: 6,
        o: 5,
        k: 5,
        stride: 1,
        pad: 2,
    },
    // conv3-5-like: 3x3, padding 1, a single sample
    Case {
        n: 1,
        c: 4,
        h: 5,
        w: 5,
        o: 3,
        k: 3,
        stride: 1,
        pad: 1,
    },
    // strided, no padding, rectangular input, more samples than threads
    Case {
        n: 5,
        c: 2,
        h: 8,
        w: 11,
        o: 3,
        k: 3,
        stride: 2,
        pad: 0,
    },
    // stride larger than the kernel with padding
    Case {
        n: 2,
        c: 2,
        h: 9,
        w: 7,
        o: 2,
        k: 2,
        stride: 3,
        pad: 1,
    },
];

fn inputs(c: &Case, seed: u64) -> Vec<Tensor> {
    vec![
        rand_tensor(&[c.n, c.c, c.h, c.w], seed),
        rand_tensor(&[c.o, c.c, c.k, c.k], seed + 1),
        rand_tensor(&[c.o], seed + 2),
    ]
}

fn out_size(c: &Case) -> (usize, usize) {
    (
        (c.h + 2 * c.pad - c.k) / c.stride + 1,
        (c.w + 2 * c.pad - c.k) / c.stride + 1,
    )
}

/// Direct convolution in f64.
fn naive(c: &Case, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
    let (ho, wo) = out_size(c);
    let mut y = vec![0.0f64; c.n * c.o * ho * wo];
    for n in 0..c.n {
        for o in 0..c.o {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = b[o] as f64;
                    for ci in 0..c.c {
                        for ki in 0..c.k {
                            for kj in 0..c.k {
                                let ih = (oh * c.stride + ki) as isize - c.pad as isize;
                                let iw = (ow * c.stride + kj) as isize - c.pad as isize;
                                if ih < 0 || iw < 0 || ih >= c.h as isize || iw >= c.w as isize {
                                    continue;
                                }
                                let xv =
                                    x[((n * c.c + ci) * c.h + ih as usize) * c.w + iw as usize];
                                let wv = w[((o * c.c + ci) * c.k + ki) * c.k + kj];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((n * c.o + o) * ho + oh) * wo + ow] = acc;
                }
            }
        }
    }
    y
}

fn ours(c: Case, input_grad: bool) -> impl Fn(&[Tensor]) -> Result<Tensor> {
    move |t: &[Tensor]| ops::conv2d(&t[0], &t[1], &t[2], c.stride, c.pad, input_grad)
}

fn stock(c: Case) -> impl Fn(&[Tensor]) -> Result<Tensor> {
    move |t: &[Tensor]| ops::conv2d_stock(&t[0], &t[1], &t[2], c.stride, c.pad)
}

#[test]
fn forward_matches_direct_convolution_and_candle() {
    for (i, c) in CASES.iter().enumerate() {
        let t = inputs(c, 10 + i as u64 * 7);
        let y = ours(*c, true)(&t).unwrap();
        let (ho, wo) = out_size(c);
        assert_eq!(y.dims(), &[c.n, c.o, ho, wo], "{c:?}");
        let want = naive(c, &to_vec(&t[0]), &to_vec(&t[1]), &to_vec(&t[2]));
        assert_close(
            &to_vec(&y),
            &want,
            1e-5,
            1e-5,
            &format!("forward vs direct {c:?}"),
        );
        let candle = stock(*c)(&t).unwrap();
        assert_close(
            &to_vec(&y),
            &as_f64(&to_vec(&candle)),
            1e-5,
            1e-5,
            &format!("forward vs candle {c:?}"),
        );
    }
}

/// Tolerance of the gradient checks: the loss is linear in each input, so
/// central differences are exact up to f32 rounding of the forward pass.
const ATOL: f64 = 2e-3;
const RTOL: f64 = 2e-3;

#[test]
fn backward_matches_finite_differences_and_candle() {
    for (i, c) in CASES.iter().enumerate() {
        let t = inputs(c, 100 + i as u64 * 7);
        let (ho, wo) = out_size(c);
        let r = uniform(&[c.n, c.o, ho, wo], 999 + i as u64);
        let f = ours(*c, true);
        let got = autograd(&f, &t, &r);
        // Candle's own backward fails ("shape mismatch in add") when the
        // stride does not tile the padded input exactly; compare only there.
        let tiles =
            (c.h + 2 * c.pad - c.k) % c.stride == 0 && (c.w + 2 * c.pad - c.k) % c.stride == 0;
        let candle = tiles.then(|| autograd(&stock(*c), &t, &r));
        for (which, name) in ["x", "w", "b"].iter().enumerate() {
            let g = got[which]
                .as_ref()
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let fd = finite_diff(&f, &t, which, &r, 0.25);
            assert_close(
                g,
                &fd,
                ATOL,
                RTOL,
                &format!("d{name} vs finite differences {c:?}"),
            );
            if let Some(candle) = &candle {
                let cg = candle[which].as_ref().unwrap();
                assert_close(
                    g,
                    &as_f64(cg),
                    1e-4,
                    1e-4,
                    &format!("d{name} vs candle {c:?}"),
                );
            }
        }
    }
}

#[test]
fn no_input_gradient_when_not_asked() {
    let c = CASES[0];
    let t = inputs(&c, 7);
    let (ho, wo) = out_size(&c);
    let r = uniform(&[c.n, c.o, ho, wo], 8);
    let without = autograd(&ours(c, false), &t, &r);
    let with = autograd(&ours(c, true), &t, &r);
    assert!(
        without[0].is_none(),
        "a gradient for x was computed although input_grad = false"
    );
    assert!(with[0].is_some());
    for which in 1..3 {
        let (a, b) = (
            without[which].as_ref().unwrap(),
            with[which].as_ref().unwrap(),
        );
        assert_eq!(a, b, "parameter gradient {which} changed with input_grad");
    }
}

#[test]
fn rejects_mismatched_shapes() {
    let x = rand_tensor(&[1, 3, 8, 8], 1);
    let w = rand_tensor(&[4, 2, 3, 3], 2);
    let b = rand_tensor(&[4], 3);
    let err = ops::conv2d(&x, &w, &b, 1, 0, true).unwrap_err().to_string();
    assert!(err.contains("channels"), "{err}");
    let w = rand_tensor(&[4, 3, 3, 3], 2);
    let b5 = rand_tensor(&[5], 3);
    assert!(ops::conv2d(&x, &w, &b5, 1, 0, true).is_err());
    let big = rand_tensor(&[4, 3, 11, 11], 4);
    assert!(ops::conv2d(&x, &big, &b, 1, 0, true).is_err());
}

#[test]
fn accepts_non_contiguous_input() {
    let c = CASES[1];
    let t = inputs(&c, 21);
    // Same values, stored transposed in H and W and viewed back.
    let xt = t[0]
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    assert!(!xt.is_contiguous());
    let a = ops::conv2d(&xt, &t[1], &t[2], c.stride, c.pad, true).unwrap();
    let b = ops::conv2d(&t[0], &t[1], &t[2], c.stride, c.pad, true).unwrap();
    assert_eq!(to_vec(&a), to_vec(&b));
}

/// `conv2d_relu` equals `conv2d` followed by Candle's ReLU, forward and
/// backward (every gradient), for every case.
#[test]
fn fused_relu_equals_conv_then_relu() {
    for (i, c) in CASES.iter().enumerate() {
        let t = inputs(c, 300 + i as u64 * 7);
        let (ho, wo) = out_size(c);
        let r = uniform(&[c.n, c.o, ho, wo], 400 + i as u64);
        let c = *c;
        let fused = move |t: &[Tensor]| -> Result<Tensor> {
            ops::conv2d_relu(&t[0], &t[1], &t[2], c.stride, c.pad, true)
        };
        let composed = move |t: &[Tensor]| -> Result<Tensor> {
            ops::conv2d(&t[0], &t[1], &t[2], c.stride, c.pad, true)?.relu()
        };
        let y = to_vec(&fused(&t).unwrap());
        assert_eq!(y, to_vec(&composed(&t).unwrap()), "forward {c:?}");
        assert!(
            y.contains(&0.0) && y.iter().any(|&v| v > 0.0),
            "ReLU inactive {c:?}"
        );
        let got = autograd(&fused, &t, &r);
        let want = autograd(&composed, &t, &r);
        for (which, name) in ["x", "w", "b"].iter().enumerate() {
            let (g, w) = (got[which].as_ref().unwrap(), want[which].as_ref().unwrap());
            assert_close(g, &as_f64(w), 1e-5, 1e-5, &format!("d{name} {c:?}"));
        }
    }
}
