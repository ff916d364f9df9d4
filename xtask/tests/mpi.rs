//! Data-parallel training under `mpirun` (OpenMPI), as users launch it:
//! two ranks against one process, checkpoint and resume at two ranks and
//! at one, a killed rank and a stuck rank. Built only with the `mpi`
//! feature; skipped when `mpirun` is missing unless `ALEXNET_REQUIRE_MPI=1`.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{preprocess_args, s, strs, TinyImageNet};
use trainer::{tensorboard, Checkpoint};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// `mpirun` when installed; a test without it is skipped, or fails when
/// `ALEXNET_REQUIRE_MPI=1` (CI).
fn mpirun() -> Option<&'static str> {
    let found = Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("ALEXNET_REQUIRE_MPI").as_deref() != Ok("1"),
            "ALEXNET_REQUIRE_MPI=1 but mpirun is not installed (scripts/setup.sh --mpi)"
        );
        eprintln!("skipped: mpirun is not installed (scripts/setup.sh --mpi)");
        return None;
    }
    Some("mpirun")
}

/// Runs to completion within `limit`, or kills it and fails: a hang is a failure.
fn run_with_limit(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let pid = child.id();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait"));
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("still running after {limit:?}: the job hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    waiter.join().expect("waiter")
}

fn xtask_ok(args: &[&str]) -> String {
    let out = run_with_limit(
        {
            let mut c = Command::new(XTASK);
            c.args(args);
            c
        },
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "xtask {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mpirun -np N [wrapper] xtask args...`.
fn mpi_command(mpirun: &str, ranks: usize, wrapper: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new(mpirun);
    c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(ranks.to_string());
    if let Some(w) = wrapper {
        c.arg(w);
    }
    c.arg(XTASK).args(args);
    c
}

fn mpi_ok(mpirun: &str, ranks: usize, args: &[&str]) -> String {
    let out = run_with_limit(
        mpi_command(mpirun, ranks, None, args),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mpirun -np {ranks} xtask {}: {}\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A small ImageNet-layout dataset, preprocessed: 44 usable train images
/// (3 classes), 6 val images.
fn dataset(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    let data = dir.join("data");
    let tiny = TinyImageNet {
        classes: 3,
        train_per_class: 16,
        val_images: 10,
        min_side: 64,
        max_side: 96,
        seed: 1,
    };
    xtask_ok(&strs(&tiny.synth_args(&input)));
    xtask_ok(&strs(&preprocess_args(&input, &data, 8, &[])));
    data
}

fn train_args<'a>(data: &'a Path, run: &'a Path) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        s(data),
        "--run-dir",
        s(run),
        "--model",
        "alexnet-small",
        "--init",
        "pytorch",
        "--lr",
        "0.005",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--seed",
        "3",
        "--quiet",
    ]
}

fn params(run: &Path) -> Vec<(String, Vec<f32>)> {
    let ck = Checkpoint::open(run).unwrap();
    let dev = model::candle_core::Device::Cpu;
    let mut p: Vec<(String, Vec<f32>)> =
        model::candle_core::safetensors::load(ck.params_path(), &dev)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
    p.sort_by(|a, b| a.0.cmp(&b.0));
    p
}

/// The largest relative difference of one parameter tensor,
/// `|a - b|_2 / |a|_2`, over the network.
fn max_rel_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((na, x), (nb, y))| {
            assert_eq!(na, nb);
            let d: f64 = x.iter().zip(y).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
            let n: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum();
            (d / n.max(f64::MIN_POSITIVE)).sqrt()
        })
        .fold(0.0, f64::max)
}

fn last_line(stdout: &str) -> &str {
    stdout.lines().last().unwrap_or_default()
}

/// Parameters within 1e-4 (relative L2 per tensor) of one process's after
/// 12 steps (only the order of the float sums differs), identical metrics
/// counts and validation errors, losses within 1e-4 relative; then a stop at step 7 and `--resume` under
/// two ranks ends bit-identical to the uninterrupted two-rank run, and the
/// same checkpoint resumed by one process ends within the tolerance.
#[test]
fn two_ranks_train_as_one_process_and_resume_at_any_world_size() {
    let Some(mpirun) = mpirun() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let (one, two, stopped, moved) = (
        tmp.path().join("one"),
        tmp.path().join("two"),
        tmp.path().join("stopped"),
        tmp.path().join("moved"),
    );

    let single = xtask_ok(&train_args(&data, &one));
    let double = mpi_ok(mpirun, 2, &train_args(&data, &two));
    assert!(
        double.contains("data parallel: 2 ranks over MPI, 4 images per rank per batch"),
        "{double}"
    );
    // Only rank 0 prints: one final line.
    assert_eq!(double.matches("final: epoch 2").count(), 1, "{double}");
    // Each parameter tensor within 1e-4 relative (L2) of one process's.
    let tolerance = 1e-4;
    let diff = max_rel_diff(&params(&one), &params(&two));
    eprintln!("2 ranks vs 1 process: largest relative parameter difference {diff:.2e}");
    assert!(
        diff < tolerance,
        "2 ranks vs 1 process: parameters differ by {diff}"
    );
    let (m1, m2) = (
        Checkpoint::open(&one).unwrap().state.metrics,
        Checkpoint::open(&two).unwrap().state.metrics,
    );
    assert_eq!(m1.len(), 2);
    for (a, b) in m1.iter().zip(&m2) {
        assert_eq!((a.step, a.train_images), (b.step, b.train_images));
        assert_eq!(
            (a.val_top1_error, a.val_top5_error, a.train_top1_error),
            (b.val_top1_error, b.val_top5_error, b.train_top1_error)
        );
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-4 * x.abs().max(y.abs());
        assert!(close(a.train_loss, b.train_loss), "{a:?} vs {b:?}");
        assert!(close(a.val_loss, b.val_loss), "{a:?} vs {b:?}");
    }
    assert_eq!(last_line(&single), last_line(&double));
    // Only rank 0 writes TensorBoard's event files: one file, each epoch once.
    let log = tensorboard::read_events(&tensorboard::tensorboard_dir(&two)).unwrap();
    assert_eq!(log.files.len(), 1, "{:?}", log.files);
    let epochs: Vec<u64> = log
        .scalars
        .iter()
        .filter(|s| s.tag == "epoch/val_top1_error")
        .map(|s| s.step)
        .collect();
    assert_eq!(epochs, m2.iter().map(|m| m.step).collect::<Vec<_>>());

    // Stop at step 7 (inside epoch 2), then resume at two ranks.
    let mut args = train_args(&data, &stopped);
    args.extend(["--max-steps", "7"]);
    let out = mpi_ok(mpirun, 2, &args);
    assert!(
        out.contains("stopped after 1 complete epoch; continue with:"),
        "{out}"
    );
    let ck = Checkpoint::open(&stopped).unwrap();
    assert_eq!(ck.state.step, 7);
    assert_eq!(ck.state.partial.as_ref().unwrap().batches_done, 1);
    copy_dir(&stopped, &moved);
    let mut args = train_args(&data, &stopped);
    args.push("--resume");
    let resumed = mpi_ok(mpirun, 2, &args);
    assert!(resumed.contains("resuming from"), "{resumed}");
    assert_eq!(max_rel_diff(&params(&two), &params(&stopped)), 0.0);

    // The same checkpoint resumed by one process.
    let mut args = train_args(&data, &moved);
    args.push("--resume");
    xtask_ok(&args);
    let diff = max_rel_diff(&params(&two), &params(&moved));
    eprintln!("resumed at 1 rank: largest relative parameter difference {diff:.2e}");
    assert!(
        diff < tolerance,
        "resumed at 1 rank: parameters differ by {diff}"
    );

    // A batch that does not split over the ranks is refused.
    let odd = tmp.path().join("odd");
    let mut args = train_args(&data, &odd);
    args[14] = "6"; // --batch-size
    let out = run_with_limit(
        mpi_command(mpirun, 4, None, &args),
        Duration::from_secs(120),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--batch-size 6 (the global batch) is not a multiple of the 4 ranks"),
        "{err}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A wrapper that sends `signal` to rank 1 two seconds after it starts.
fn signal_wrapper(dir: &Path, signal: &str) -> PathBuf {
    let path = dir.join(format!("rank1-{signal}.sh"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (sleep 2; kill -{signal} $$) & fi\nexec \"$@\"\n"
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).unwrap();
    path
}

/// A rank killed with SIGKILL ends the job at once, named by the launcher;
/// a rank that stops answering (SIGSTOP) ends it after the collective
/// timeout, with the trainer's message. Neither hangs.
#[test]
fn a_killed_or_stuck_rank_ends_the_job_with_a_clear_error() {
    let Some(mpirun) = mpirun() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    for (signal, expect) in [
        ("KILL", "exited on signal 9"),
        (
            "STOP",
            "for the other ranks: one of them is gone or stuck; ending the job",
        ),
    ] {
        let run = tmp.path().join(format!("run-{signal}"));
        let mut args = train_args(&data, &run);
        args[12] = "500"; // --epochs: far longer than the two seconds
        args.extend(["--collective-timeout", "3"]);
        let wrapper = signal_wrapper(tmp.path(), signal);
        let out = run_with_limit(
            mpi_command(mpirun, 2, Some(&wrapper), &args),
            Duration::from_secs(90),
        );
        assert!(!out.status.success(), "{signal}: the job should fail");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains(expect), "{signal}: {all}");
    }
}
