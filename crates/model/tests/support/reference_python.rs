//! The Python that runs the NumPy reference scripts (`scripts/reference`,
//! `scripts/torch_eval.py`), for the tests that compare with them. Shared by
//! the model's and the trainer's tests (the trainer's include this file).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A python3 with numpy, h5py and safetensors: `$ALEXNET_PYTHON`, the
/// workspace's `.venv` (`scripts/setup.sh --python`), or `python3`. Without
/// one the calling test is skipped (`None`, with a line on stderr), unless
/// `ALEXNET_REQUIRE_PYTHON` is set (CI), where that is a failure.
#[allow(dead_code)] // each test binary that includes this file uses one of the two
pub fn reference_python(test: &str) -> Option<PathBuf> {
    python_with(test, &["numpy", "h5py", "safetensors"])
}

/// A python3 that imports each of `modules`, found and reported as by
/// [`reference_python`].
#[allow(dead_code)]
pub fn python_with(test: &str, modules: &[&str]) -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("ALEXNET_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(workspace.join(".venv/bin/python3"));
    candidates.push(PathBuf::from("python3"));
    let import = format!("import {}", modules.join(", "));
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", &import])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p.clone());
        }
    }
    let why = format!(
        "none of {candidates:?} imports {} (run scripts/setup.sh --python)",
        modules.join(", ")
    );
    if std::env::var_os("ALEXNET_REQUIRE_PYTHON").is_some() {
        panic!("ALEXNET_REQUIRE_PYTHON is set but {why}");
    }
    // Straight to stderr: the test harness would hide `eprintln!`.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    None
}
