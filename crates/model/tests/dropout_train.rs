//! Dropout in training mode against the reference semantics of PyTorch's
//! `F.dropout(x, p, training=True)` (zero with probability p, survivors
//! scaled by 1/(1-p), the gradient masked alike): logits, loss and the
//! gradients of fc6, fc7 and fc8 of the tiny fixture network
//! (`tests/fixtures/tiny.safetensors`) in `ForwardMode::Train`, for p = 0.5
//! and p = 0.3 (where 1/(1-p) and 1/p differ).
//!
//! PyTorch cannot be handed a mask, so the reference is
//! `scripts/reference/dropout_numpy.py`: the float64 NumPy forward pass of
//! `scripts/torch_eval.py` with dropout applied as PyTorch defines it, and
//! the backward pass of the fully connected layers. Both sides use the same
//! masks: the test draws the ones the network documents (ChaCha8 seeded with
//! the dropout seed, stream `2 * layer + tower`, layer 0 = fc6, 1 = fc7;
//! element `(row, k)` is the stream's `f32` draw at word `row * width + k`,
//! dropped when below p) and hands them to the script. Had the network used other masks, the logits would not
//! match.
//!
//! Needs python3 with numpy, h5py and safetensors (`.venv` at the workspace
//! root from `scripts/setup.sh --python`, `$ALEXNET_PYTHON`, or `python3`);
//! skipped with a message when there is none, unless `ALEXNET_REQUIRE_PYTHON`
//! is set (CI), where that is a failure.

#[path = "support/reference_python.rs"]
mod reference_python;
#[path = "support/rel_err.rs"]
mod rel_err;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use model::{AlexNet, AlexNetConfig, ForwardMode, Init, Placement};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reference_python::reference_python;
use rel_err::{rel_err, TOL};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny.safetensors")
}

/// The masks the network documents for `seed`: `mask.{tower}.{layer}`,
/// `[batch, width]`, each element 0 or 1/(1-p).
fn masks(seed: u64, p: f32, batch: usize, width: usize) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (layer, lname) in ["fc6", "fc7"].iter().enumerate() {
        for (tower, tname) in ["tower_a", "tower_b"].iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(2 * layer as u64 + tower as u64);
            let m: Vec<f32> = (0..batch * width)
                .map(|_| {
                    if rng.random::<f32>() < p {
                        0.0
                    } else {
                        1.0 / (1.0 - p)
                    }
                })
                .collect();
            let t = Tensor::from_vec(m, (batch, width), &Device::Cpu).unwrap();
            out.insert(format!("mask.{tname}.{lname}"), t);
        }
    }
    out
}

#[test]
fn train_mode_dropout_matches_the_reference_with_the_same_masks() {
    let Some(py) = reference_python("train_mode_dropout_matches_the_reference_with_the_same_masks")
    else {
        return;
    };
    let fx = candle_core::safetensors::load(fixture_path(), &Device::Cpu).unwrap();
    let input = &fx["input"];
    let labels = fx["labels"].to_dtype(DType::U32).unwrap();
    let batch = input.dims()[0];
    let tmp = tempfile::tempdir().unwrap();
    for (p, seed) in [(0.5f32, 11u64), (0.3, 12)] {
        let cfg = AlexNetConfig {
            dropout: p,
            ..AlexNetConfig::reference_tiny()
        };
        let varmap = VarMap::new();
        let net = AlexNet::new(&varmap, &cfg, &Placement::cpu(), Init::PyTorch, 0).unwrap();
        let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        for name in &names {
            varmap.data().lock().unwrap()[name]
                .set(&fx[&format!("param.{name}")])
                .unwrap();
        }

        let m = masks(seed, p, batch, cfg.tower_fc_width());
        let kept: usize = m
            .values()
            .map(|t| {
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .filter(|&&v| v != 0.0)
                    .count()
            })
            .sum();
        let total = 4 * batch * cfg.tower_fc_width();
        assert!(0 < kept && kept < total, "p = {p}: {kept} of {total} kept");
        let mask_path = tmp.path().join(format!("masks-{p}.safetensors"));
        let ref_path = tmp.path().join(format!("reference-{p}.safetensors"));
        candle_core::safetensors::save(&m, &mask_path).unwrap();
        let out = Command::new(&py)
            .arg(workspace().join("scripts/reference/dropout_numpy.py"))
            .arg("--params")
            .arg(fixture_path())
            .arg("--masks")
            .arg(&mask_path)
            .arg("--out")
            .arg(&ref_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dropout_numpy.py failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let want = candle_core::safetensors::load(&ref_path, &Device::Cpu).unwrap();

        let logits = net
            .forward(input, ForwardMode::Train { dropout_seed: seed })
            .unwrap();
        let e = rel_err(&logits, &want["logits"]);
        assert!(e <= TOL, "p = {p}: logits relative error {e:e}");
        // Dropout did act: the reference differs from the evaluation-mode
        // logits of the same network.
        let eval_diff = rel_err(&fx["logits"], &want["logits"]);
        assert!(
            eval_diff > 0.01,
            "p = {p}: train and eval agree ({eval_diff:e})"
        );

        let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
        let e = rel_err(&loss.reshape(1).unwrap(), &want["loss"]);
        assert!(e <= TOL, "p = {p}: loss relative error {e:e}");
        let grads = loss.backward().unwrap();
        let mut checked = 0;
        for (key, reference) in &want {
            let Some(name) = key.strip_prefix("grad.") else {
                continue;
            };
            let var = varmap.data().lock().unwrap()[name].clone();
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let e = rel_err(g, reference);
            assert!(e <= TOL, "p = {p}: grad {name} relative error {e:e}");
            checked += 1;
        }
        assert_eq!(checked, 2 * 2 * 2 + 2, "fc6, fc7 of both towers and fc8");
    }
}
