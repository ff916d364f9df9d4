//! `scripts/gpu-check.sh` without a GPU (`DEVICE=cpu`): both calls run
//! every step, and what comes back fits what a GPU machine returns (at most
//! 8 files), with every step's log in `logs.tar.gz`. Also its helpers: the
//! unpacking without `xz`, and the relative comparison of two runs'
//! parameters. Needs bash, tar and python3 (the standard library only).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs one call of the script with its results in `out`; returns the
/// summary.
fn gpu_check(stage: &str, out: &Path) -> (bool, String) {
    let o = Command::new("bash")
        .arg(root().join("scripts/gpu-check.sh"))
        .env("DEVICE", "cpu")
        .env("STAGE", stage)
        .env("OUT", out)
        .env("XTASK", env!("CARGO_BIN_EXE_xtask"))
        .output()
        .expect("bash runs");
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    if !o.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&o.stdout));
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    }
    (o.status.success(), summary)
}

/// Every file under `dir`, at any depth.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The names of the files in a `.tar.gz`.
fn archived(archive: &Path) -> BTreeSet<String> {
    let o = Command::new("tar")
        .arg("tzf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar tzf {}", archive.display());
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The steps the summary reports as run (`[name] rc=...`), with their rc.
fn steps(summary: &str) -> Vec<(String, String)> {
    summary
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (name, tail) = rest.split_once("] ")?;
            let rc = tail.strip_prefix("rc=")?.split_whitespace().next()?;
            Some((name.to_string(), rc.to_string()))
        })
        .collect()
}

#[test]
fn both_calls_on_the_cpu_leave_at_most_8_files_with_every_steps_log_archived() {
    let tmp = tempfile::tempdir().unwrap();
    for (stage, expected) in [
        (
            "smoke",
            &[
                "libs",
                "check-ops",
                "check-tiny-one",
                "check-tiny-split",
                "check-alexnet-one",
                "check-alexnet-split",
            ][..],
        ),
        (
            "full",
            &[
                "train-step-one-fp32",
                "train-step-split-tf32",
                "synth",
                "preprocess",
                "train-loader",
                "loader-alone",
                "loader-alone-u8",
                "sums-auto",
                "sums-host",
                "sums-compare",
                "layers",
                "layers-tf32",
                "train-step-stock-ops",
            ][..],
        ),
    ] {
        let out = tmp.path().join(stage);
        let (ok, summary) = gpu_check(stage, &out);
        assert!(ok, "{stage} call failed:\n{summary}");
        let left = files(&out);
        assert!(left.len() <= 8, "{stage}: {} files: {left:?}", left.len());
        let names: BTreeSet<String> = left
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["summary.txt".to_string(), "logs.tar.gz".to_string()])
        );
        let logs = archived(&out.join("logs.tar.gz"));
        let ran = steps(&summary);
        for name in expected {
            assert!(
                ran.iter().any(|(n, _)| n == name),
                "{stage}: step {name} not in the summary:\n{summary}"
            );
        }
        for (name, rc) in &ran {
            assert_eq!(rc, "0", "{stage}: step {name} failed:\n{summary}");
            assert!(
                logs.contains(&format!("{name}.log")),
                "{stage}: {name}.log not archived; archive holds {logs:?}"
            );
        }
        if stage == "smoke" {
            assert!(summary.contains("smoke: PASS"), "{summary}");
            assert!(logs.contains("ldd.txt"), "{logs:?}");
        } else {
            assert!(logs.contains("train-loader-metrics.csv"), "{logs:?}");
            assert!(
                summary.contains("PASS: sums-auto vs sums-host"),
                "{summary}"
            );
            assert!(summary.contains("data wait"), "{summary}");
        }
    }
}

fn python(code: &str, args: &[&Path]) {
    let o = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_binary_and_libraries_unpack_without_xz() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (plain, libs) = (t.join("payload.bin"), t.join("libs"));
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&plain, &payload).unwrap();
    std::fs::create_dir(&libs).unwrap();
    std::fs::write(libs.join("libdemo.so.1"), b"not really a library").unwrap();
    python(
        "import lzma, sys, tarfile\n\
         open(sys.argv[2], 'wb').write(lzma.compress(open(sys.argv[1], 'rb').read()))\n\
         with tarfile.open(sys.argv[4], 'w:xz') as tf: tf.add(sys.argv[3], arcname='.')",
        &[
            &plain,
            &t.join("payload.bin.xz"),
            &libs,
            &t.join("libs.tar.xz"),
        ],
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(
            ". scripts/lib/unpack.sh && have_xz && exit 3; \
             unxz_to \"$1/payload.bin.xz\" \"$1/out.bin\" && mkdir \"$1/unpacked\" && \
             untar_xz \"$1/libs.tar.xz\" \"$1/unpacked\"",
        )
        .arg("unpack")
        .arg(t)
        .current_dir(root())
        .env("GPU_CHECK_NO_XZ", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rc {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(t.join("out.bin")).unwrap(), payload);
    assert_eq!(
        std::fs::read(t.join("unpacked/libdemo.so.1")).unwrap(),
        b"not really a library"
    );
}

/// A run directory whose latest checkpoint holds `tensors` (name, values).
fn run_dir(dir: &Path, tensors: &[(&str, &[f32])]) {
    let ck = "checkpoints/last";
    std::fs::create_dir_all(dir.join(ck)).unwrap();
    std::fs::write(
        dir.join("latest.json"),
        format!("{{\"checkpoint\": \"{ck}\"}}"),
    )
    .unwrap();
    let (mut head, mut body) = (Vec::new(), Vec::new());
    for (name, values) in tensors {
        let start = body.len();
        for v in *values {
            body.extend_from_slice(&v.to_le_bytes());
        }
        head.push(format!(
            "\"{name}\": {{\"dtype\": \"F32\", \"shape\": [{}], \"data_offsets\": [{start}, {}]}}",
            values.len(),
            body.len()
        ));
    }
    let head = format!("{{{}}}", head.join(", "));
    let mut file = (head.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(head.as_bytes());
    file.extend_from_slice(&body);
    std::fs::write(dir.join(ck).join("params.safetensors"), file).unwrap();
}

fn compare(a: &Path, b: &Path, tolerance: &str) -> (bool, String) {
    let o = Command::new("python3")
        .arg(root().join("scripts/lib/compare_params.py"))
        .args([a.as_os_str(), b.as_os_str()])
        .arg(tolerance)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn parameters_compare_relative_to_each_tensors_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("sums-nccl"), tmp.path().join("sums-host"));
    // Large weights differ by 1e-4 of their scale; a near-zero bias by 1e-6
    // absolute, which is 1e-2 of its own scale.
    run_dir(&a, &[("w", &[100.0, -50.0, 0.01]), ("b", &[1e-4, 0.0])]);
    run_dir(&b, &[("w", &[100.01, -50.0, 0.01]), ("b", &[1.01e-4, 0.0])]);
    let (ok, out) = compare(&a, &b, "1e-3");
    assert!(!ok, "{out}");
    assert!(
        out.starts_with("FAIL: sums-nccl vs sums-host: worst tensor b"),
        "{out}"
    );
    let (ok, out) = compare(&a, &b, "2e-2");
    assert!(ok, "{out}");
    assert!(out.contains("= 0.0099"), "the figure is printed: {out}");
    run_dir(&b, &[("w", &[100.0, -50.0, 0.01])]);
    let (ok, out) = compare(&a, &b, "1");
    assert!(!ok, "a missing tensor fails: {out}");
}
