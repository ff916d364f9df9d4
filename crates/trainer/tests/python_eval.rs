//! `scripts/torch_eval.py` reads our checkpoints: its NumPy forward pass
//! of the same loading and name-mapping code gives the same top-1/top-5
//! counts as `cargo xtask eval` (`trainer::evaluate_checkpoint`) and the
//! same logits within 1e-4 relative, for a ReLU and a tanh checkpoint.
//!
//! Needs python3 with numpy, h5py and safetensors: `.venv` at the workspace
//! root (`scripts/setup.sh --python`), `$ALEXNET_PYTHON`, or `python3` on
//! the PATH. Skipped with a message when none has them, unless
//! `ALEXNET_REQUIRE_PYTHON` is set (CI), where that is a failure.

mod common;
#[path = "../../model/tests/support/reference_python.rs"]
mod reference_python;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use loader::{Dataset, DatasetDir, Loader, LoaderConfig, Stats};
use model::{Activation, ForwardMode};
use reference_python::reference_python;
use trainer::load_network;
use trainer::{evaluate_checkpoint, train, Checkpoint};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads a 2-D little-endian float `.npy` file (format 1.0-3.0).
fn read_npy(path: &Path) -> (Vec<f64>, usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an npy file");
    let (len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    assert!(header.contains("'fortran_order': False"), "{header}");
    let body = &bytes[start + len..];
    let values: Vec<f64> = if header.contains("'<f8'") {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    } else if header.contains("'<f4'") {
        body.chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect()
    } else {
        panic!("unsupported dtype in {header}")
    };
    assert_eq!(values.len(), shape[0] * shape[1]);
    (values, shape[0], shape[1])
}

/// Logits of the centre crops of the validation split, in stored order.
fn rust_logits(run: &Path, data: &Path) -> Vec<f32> {
    let ck = Checkpoint::open(run).unwrap();
    let net = load_network(&ck, &trainer::Devices::default()).unwrap();
    let loader = Loader::new(
        Dataset::open(&DatasetDir::new(data).val()).unwrap(),
        Stats::open(&DatasetDir::new(data).stats()).unwrap(),
        LoaderConfig {
            batch_size: 5,
            threads: 2,
            crop: common::INPUT,
            ..LoaderConfig::eval()
        },
    )
    .unwrap();
    let mut out = Vec::new();
    for batch in loader.epoch(0).unwrap() {
        let (x, _) = batch.unwrap().to_tensors(&Device::Cpu).unwrap();
        let logits = net.forward(&x, ForwardMode::Eval).unwrap();
        out.extend(logits.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    out
}

/// `centre crop: N images, A top-1 correct, B top-5 correct, ...` -> (N, A, B).
fn parse_counts(stdout: &str) -> (u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("centre crop:"))
        .unwrap_or_else(|| panic!("no counts in:\n{stdout}"));
    let nums: Vec<u64> = line
        .split([' ', ','])
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1], nums[2])
}

#[test]
fn numpy_forward_of_the_script_matches_the_rust_evaluation() {
    let Some(python) = reference_python("numpy_forward_of_the_script_matches_the_rust_evaluation")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 12, 5);
    for activation in [Activation::Relu, Activation::Tanh] {
        let run = tmp.path().join(format!("run-{activation}"));
        let mut cfg = common::tiny_config(&data, &run);
        cfg.epochs = 1;
        cfg.architecture.activation = activation;
        train(&cfg, &AtomicBool::new(false)).unwrap();

        let eval =
            evaluate_checkpoint(&common::eval_config(&run, &data), &trainer::NoEvents).unwrap();
        let c = eval.centre.counter;

        let logits_path = tmp.path().join(format!("logits-{activation}.npy"));
        let output = Command::new(&python)
            .arg(workspace().join("scripts/torch_eval.py"))
            .arg("--checkpoint")
            .arg(&run)
            .arg("--data")
            .arg(&data)
            .args(["--backend", "numpy", "--batch-size", "4", "--logits"])
            .arg(&logits_path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "torch_eval.py failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            parse_counts(&stdout),
            (c.images, c.top1_correct, c.top5_correct),
            "{activation}: {stdout}"
        );
        let last = stdout.lines().last().unwrap();
        assert_eq!(
            last,
            format!(
                "top-1 error {:.2}%, top-5 error {:.2}%",
                c.top1_error(),
                c.top5_error()
            )
        );

        let (py, rows, cols) = read_npy(&logits_path);
        assert_eq!((rows, cols), (c.images as usize, common::CLASSES));
        let rs = rust_logits(&run, &data);
        let scale = py.iter().fold(0f64, |m, v| m.max(v.abs()));
        let worst = rs
            .iter()
            .zip(&py)
            .map(|(&r, &p)| (f64::from(r) - p).abs())
            .fold(0f64, f64::max);
        assert!(
            worst <= 1e-4 * scale,
            "{activation}: logits differ by {worst:e} (largest |logit| {scale})"
        );
        eprintln!("{activation}: counts equal, max logit difference {worst:e} of {scale}");
    }
}
