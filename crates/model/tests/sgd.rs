//! The paper's SGD update on known tensors, and momentum state round trip.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use model::PaperSgd;

#[test]
fn update_matches_the_papers_formula() {
    let varmap = VarMap::new();
    let w0 = [1.0f32, -2.0, 0.5, 3.0];
    let w = Var::from_tensor(&Tensor::new(&w0, &Device::Cpu).unwrap()).unwrap();
    varmap.data().lock().unwrap().insert("w".into(), w.clone());
    let (lr, m, wd) = (0.1f64, 0.9f64, 0.01f64);
    let mut sgd = PaperSgd::new(&varmap, lr, m, wd).unwrap();
    // loss = sum(c * w) -> grad = c.
    let c = [0.5f32, 1.0, -1.0, 2.0];
    let ct = Tensor::new(&c, &Device::Cpu).unwrap();
    let mut wv = w0.map(|x| x as f64);
    let mut v = [0f64; 4];
    for _ in 0..3 {
        let loss = (w.as_tensor() * &ct).unwrap().sum_all().unwrap();
        sgd.step(&loss.backward().unwrap()).unwrap();
        for i in 0..4 {
            v[i] = m * v[i] - wd * lr * wv[i] - lr * c[i] as f64;
            wv[i] += v[i];
        }
    }
    let got = w.as_tensor().to_vec1::<f32>().unwrap();
    for i in 0..4 {
        assert!(
            (got[i] as f64 - wv[i]).abs() < 1e-6,
            "w[{i}] = {} want {}",
            got[i],
            wv[i]
        );
    }
    let state = sgd.momentum_state();
    let mv = state["w"].to_vec1::<f32>().unwrap();
    for i in 0..4 {
        assert!((mv[i] as f64 - v[i]).abs() < 1e-6);
    }
    // lr can be changed.
    sgd.set_lr(0.01);
    assert_eq!(sgd.lr(), 0.01);
}

#[test]
fn momentum_state_round_trip_and_errors() {
    let varmap = VarMap::new();
    let w = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap()).unwrap();
    varmap.data().lock().unwrap().insert("p".into(), w.clone());
    let mut sgd = PaperSgd::new(&varmap, 0.1, 0.9, 0.0).unwrap();
    let mut state = HashMap::new();
    state.insert(
        "p".to_string(),
        Tensor::new(&[0.5f32, -0.5], &Device::Cpu).unwrap(),
    );
    sgd.load_momentum_state(&state).unwrap();
    assert_eq!(
        sgd.momentum_state()["p"].to_vec1::<f32>().unwrap(),
        vec![0.5, -0.5]
    );
    // A zero gradient step applies v <- 0.9 v; w <- w + v.
    let zeros = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    let loss = (w.as_tensor() * &zeros).unwrap().sum_all().unwrap();
    sgd.step(&loss.backward().unwrap()).unwrap();
    let got = w.as_tensor().to_vec1::<f32>().unwrap();
    assert!(
        (got[0] - 1.45).abs() < 1e-6 && (got[1] - 1.55).abs() < 1e-6,
        "{got:?}"
    );

    state.insert("q".to_string(), Tensor::new(&[0f32], &Device::Cpu).unwrap());
    assert!(sgd
        .load_momentum_state(&state)
        .unwrap_err()
        .to_string()
        .contains("unknown parameter q"));
    let mut wrong = HashMap::new();
    wrong.insert(
        "p".to_string(),
        Tensor::new(&[0f32; 3], &Device::Cpu).unwrap(),
    );
    assert!(sgd
        .load_momentum_state(&wrong)
        .unwrap_err()
        .to_string()
        .contains("shape"));
    assert!(sgd
        .load_momentum_state(&HashMap::new())
        .unwrap_err()
        .to_string()
        .contains("lacks p"));
}

/// Parameters the fused CPU kernels do not take (here f64) go through the
/// generic tensor operations, with the same formula; a parameter without a
/// gradient is left as it is.
#[test]
fn f64_parameters_follow_the_same_formula_and_ungraded_ones_stay() {
    let varmap = VarMap::new();
    let w0 = [1.0f64, -2.0, 0.5];
    let w = Var::from_tensor(&Tensor::new(&w0, &Device::Cpu).unwrap()).unwrap();
    let idle = Var::from_tensor(&Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap()).unwrap();
    varmap.data().lock().unwrap().insert("w".into(), w.clone());
    varmap
        .data()
        .lock()
        .unwrap()
        .insert("idle".into(), idle.clone());
    let (lr, m, wd) = (0.1f64, 0.9f64, 0.01f64);
    let mut sgd = PaperSgd::new(&varmap, lr, m, wd).unwrap();
    let c = [0.5f64, 1.0, -1.0];
    let ct = Tensor::new(&c, &Device::Cpu).unwrap();
    let mut wv = w0;
    let mut v = [0f64; 3];
    for _ in 0..3 {
        let loss = (w.as_tensor() * &ct).unwrap().sum_all().unwrap();
        sgd.step(&loss.backward().unwrap()).unwrap();
        for i in 0..3 {
            v[i] = m * v[i] - wd * lr * wv[i] - lr * c[i];
            wv[i] += v[i];
        }
    }
    let got = w.as_tensor().to_vec1::<f64>().unwrap();
    for i in 0..3 {
        assert!(
            (got[i] - wv[i]).abs() < 1e-12,
            "w[{i}] = {} want {}",
            got[i],
            wv[i]
        );
    }
    let state = sgd.momentum_state();
    let mv = state["w"].to_vec1::<f64>().unwrap();
    for i in 0..3 {
        assert!(
            (mv[i] - v[i]).abs() < 1e-12,
            "v[{i}] = {} want {}",
            mv[i],
            v[i]
        );
    }
    assert_eq!(idle.as_tensor().to_vec1::<f32>().unwrap(), [3.0, 4.0]);
    assert_eq!(state["idle"].to_vec1::<f32>().unwrap(), [0.0, 0.0]);
}
