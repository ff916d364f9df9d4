//! The network, loss, gradients and SGD steps against a PyTorch reference
//! (`scripts/reference/alexnet_torch.py`, computed in float64, stored as
//! float32) on a tiny configuration with the paper's structure.
//!
//! Tolerance: for every tensor, `max |ours - reference| <= TOL * max |reference|`
//! with `TOL = 1e-5` (float32 has a 6e-8 unit roundoff; the sums here run
//! over up to a few thousand terms with activations up to ~100; the worst
//! case measured is about 1e-6).

#[path = "support/rel_err.rs"]
mod rel_err;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use model::{AlexNet, AlexNetConfig, ForwardMode, Init, PaperSgd, Placement};
use rel_err::{rel_err, TOL};

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny.safetensors"
    );
    candle_core::safetensors::load(path, &Device::Cpu).expect("fixture loads")
}

fn check(what: &str, got: &Tensor, want: &Tensor, worst: &mut (f32, String)) {
    let e = rel_err(got, want);
    if e > worst.0 {
        *worst = (e, what.to_string());
    }
    assert!(e <= TOL, "{what}: relative error {e:e} > {TOL:e}");
}

/// Both implementations of the layers: the custom operations (default) and
/// the stock Candle compositions. (One test, so the process-wide switch is
/// not raced by another test of this binary.)
#[test]
fn matches_pytorch_forward_loss_gradients_and_sgd() {
    run_fixture("custom ops");
    model::use_stock_ops(true);
    run_fixture("stock candle ops");
    model::use_stock_ops(false);
}

fn run_fixture(which: &str) {
    let fx = fixture();
    let cfg = AlexNetConfig::reference_tiny();
    let varmap = VarMap::new();
    let net = AlexNet::new(&varmap, &cfg, &Placement::cpu(), Init::PyTorch, 0).unwrap();
    let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    // Every parameter of the net is in the fixture and vice versa.
    let fixture_params = fx.keys().filter(|k| k.starts_with("param.")).count();
    assert_eq!(names.len(), fixture_params);
    assert_eq!(names.len(), 2 * 7 * 2 + 2);
    for name in &names {
        let t = &fx[&format!("param.{name}")];
        varmap.data().lock().unwrap()[name].set(t).unwrap();
    }
    let input = &fx["input"];
    let labels = fx["labels"].to_dtype(DType::U32).unwrap();
    let mut worst = (0f32, String::new());
    let _ = which;

    let mut sgd = PaperSgd::new(&varmap, 0.01, 0.9, 5e-4).unwrap();
    for step in 1..=2 {
        let logits = net.forward(input, ForwardMode::Eval).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
        let grads = loss.backward().unwrap();
        if step == 1 {
            check("logits", &logits, &fx["logits"], &mut worst);
            check("loss", &loss.reshape(1).unwrap(), &fx["loss"], &mut worst);
            for name in &names {
                let var = varmap.data().lock().unwrap()[name].clone();
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("no gradient for {name}"));
                check(
                    &format!("grad {name}"),
                    g,
                    &fx[&format!("grad.{name}")],
                    &mut worst,
                );
            }
        }
        sgd.step(&grads).unwrap();
        for name in &names {
            let var = varmap.data().lock().unwrap()[name].clone();
            let want = &fx[&format!("step{step}.{name}")];
            check(
                &format!("step {step} {name}"),
                var.as_tensor(),
                want,
                &mut worst,
            );
        }
    }
    println!("{which}: worst relative error {:e} ({})", worst.0, worst.1);
}

/// The fixture really exercises the net: the reference logits differ
/// between the two samples and the first step moves every parameter.
#[test]
fn fixture_is_not_degenerate() {
    let fx = fixture();
    let logits = fx["logits"].to_vec2::<f32>().unwrap();
    assert_ne!(logits[0], logits[1]);
    for (k, v) in &fx {
        if let Some(name) = k.strip_prefix("param.") {
            let after = &fx[&format!("step1.{name}")];
            let moved = (after - v)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(moved > 0.0, "{name} did not move in the reference step");
        }
    }
}
