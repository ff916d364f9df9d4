//! The job scripts under a real Slurm, as users submit them: the
//! preprocess array equals one run; the training job trains two ranks
//! data-parallel; `scontrol requeue` in the middle of an epoch resumes and
//! ends on the uninterrupted run's final line; a launch under `--mpi=none`
//! is refused instead of training copies. On one machine,
//! `scripts/slurm/local-cluster.sh` (as root) starts the cluster. Built
//! only with the `mpi` feature; skipped when no Slurm answers, unless
//! `ALEXNET_REQUIRE_SLURM=1` (CI).
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{preprocess_args, s, strs, TinyImageNet};
use trainer::Checkpoint;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// The repository root, where jobs are submitted from.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository root")
        .to_path_buf()
}

/// Whether a Slurm controller answers with a usable node; without one the
/// test is skipped, or fails when `ALEXNET_REQUIRE_SLURM=1`.
fn slurm_up() -> bool {
    let states = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let up = states.lines().any(|l| {
        ["idle", "mixed", "allocated"]
            .iter()
            .any(|s| l.starts_with(s))
    });
    if !up {
        assert!(
            std::env::var("ALEXNET_REQUIRE_SLURM").as_deref() != Ok("1"),
            "ALEXNET_REQUIRE_SLURM=1 but no Slurm node answers (sinfo: {states:?}): \
             start one with scripts/slurm/local-cluster.sh (as root)"
        );
        eprintln!(
            "skipped: no Slurm node answers (sinfo); scripts/slurm/local-cluster.sh starts one \
             on this machine (as root)"
        );
    }
    up
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn xtask_ok(args: &[&str]) {
    let (ok, text) = run(Command::new(XTASK).args(args));
    assert!(ok, "xtask {}: {text}", args.join(" "));
}

/// `sbatch` from the repository root with the test's binary, the limits
/// of a small machine, and `env`; `--wait` blocks until the job ends. The
/// time limit stays above train.sbatch's `--signal=INT@300`, which would
/// otherwise stop the training at once.
fn sbatch(sbatch_args: &[&str], script: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new("sbatch");
    c.current_dir(root())
        .env("XTASK", XTASK)
        .envs(env.iter().copied())
        .args(["--parsable", "--time=15", "--mem=1G", "--cpus-per-task=1"])
        .args(sbatch_args)
        .arg(script)
        .args(args);
    c
}

/// `scontrol show job`'s `JobState` and `Restarts` (times requeued).
fn job_state(id: &str) -> (String, u32) {
    let (_, text) = run(Command::new("scontrol").args(["show", "job", id, "-o"]));
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_default()
            .to_string()
    };
    (field("JobState="), field("Restarts=").parse().unwrap_or(0))
}

/// Waits for job `id`, requeued once, to run again and end, starting it
/// when it waits for its begin time; its final state. Slurm delays a
/// requeued job's start; starting it sooner must wait 2 s: a job started
/// again in the second its first run was killed in is refused by slurmd
/// ("already killed, do not launch batch job": it compares times in whole
/// seconds) and fails.
fn wait_for_requeued(id: &str, limit: Duration) -> String {
    let start = Instant::now();
    let mut running_again = false;
    loop {
        let (state, restarts) = job_state(id);
        match state.as_str() {
            "PENDING" | "REQUEUED" if start.elapsed() < Duration::from_secs(2) => {}
            "PENDING" | "REQUEUED" => {
                let _ = run(Command::new("scontrol").args([
                    "update",
                    &format!("jobid={id}"),
                    "starttime=now",
                ]));
            }
            "RUNNING" if restarts >= 1 => running_again = true,
            "RUNNING" | "CONFIGURING" | "COMPLETING" => {}
            _ if running_again => return state,
            _ => {}
        }
        if start.elapsed() > limit {
            let (_, job) = run(Command::new("scontrol").args(["show", "job", id]));
            panic!("job {id} still {state} (restarts {restarts}) after {limit:?}:\n{job}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn final_line(out: &str) -> &str {
    out.lines()
        .rfind(|l| l.starts_with("final: "))
        .unwrap_or_else(|| panic!("no final line in:\n{out}"))
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn job_scripts_under_a_real_slurm() {
    if !slurm_up() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (input, one, array) = (dir.join("in"), dir.join("one"), dir.join("array"));
    let tiny = TinyImageNet {
        classes: 3,
        train_per_class: 32,
        val_images: 10,
        min_side: 64,
        max_side: 96,
        seed: 1,
    };
    xtask_ok(&strs(&tiny.synth_args(&input)));

    // The preprocess array gives the dataset of one run, byte for byte.
    let args = |out: &Path| preprocess_args(&input, out, 8, &["--open-shards", "2"]);
    xtask_ok(&strs(&args(&one)));
    // The script adds `preprocess` itself (and `--quiet`, given here too).
    let task_args: Vec<String> = args(&array)
        .into_iter()
        .filter(|a| a != "preprocess")
        .collect();
    let output = format!("--output={}/pre-%a.out", s(dir));
    let (ok, text) = run(&mut sbatch(
        &["--wait", "--array=0-2", &output],
        "scripts/slurm/preprocess.sbatch",
        &strs(&task_args),
        &[],
    ));
    assert!(ok, "preprocess array: {text}");
    // Besides the dataset, the array keeps its parts' records in parts/.
    let written: Vec<PathBuf> = files(&array)
        .into_iter()
        .filter(|f| !f.starts_with("parts"))
        .collect();
    assert_eq!(files(&one), written);
    for f in files(&one) {
        assert!(
            std::fs::read(one.join(&f)).unwrap() == std::fs::read(array.join(&f)).unwrap(),
            "{} differs between the array and one run",
            f.display()
        );
    }

    // Training: 2 ranks on one node, the script's flags changed by
    // variables (DATA, ...) and by flags after the script (--batch-size).
    let train = |run_dir: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let output = format!("--output={}", s(out));
        let mut sbatch_args = vec![
            "--nodes=1",
            "--ntasks=2",
            "--ntasks-per-node=2",
            "--gpus-per-node=0",
            "--open-mode=append",
        ];
        sbatch_args.extend(extra);
        sbatch_args.push(&output);
        let mut vars = vec![
            ("DATA", s(&one)),
            ("RUN", s(run_dir)),
            ("MODEL", "alexnet-small"),
            ("DEVICES", "cpu"),
            ("EPOCHS", "2"),
            ("EVERY", "3"),
        ];
        vars.extend(env);
        let flags = [
            "--init",
            "pytorch",
            "--lr",
            "0.005",
            "--seed",
            "3",
            "--batch-size",
            "4",
        ];
        sbatch(&sbatch_args, "scripts/slurm/train.sbatch", &flags, &vars)
    };
    let (whole, whole_out) = (dir.join("whole"), dir.join("whole.out"));
    let (ok, text) = run(&mut train(&whole, &whole_out, &["--wait"], &[]));
    let out = read(&whole_out);
    assert!(ok, "training job: {text}\n{out}");
    assert!(
        out.contains("data parallel: 2 ranks over MPI, 2 images per rank per batch"),
        "{out}"
    );
    assert_eq!(out.matches("final: epoch 2").count(), 1, "{out}");

    // The same job requeued in the middle of epoch 1 (after its first
    // periodic checkpoint, at step 3 of 23): it resumes there and ends on
    // the same line.
    let (requeued, requeued_out) = (dir.join("requeued"), dir.join("requeued.out"));
    let (ok, id) = run(&mut train(&requeued, &requeued_out, &[], &[]));
    let id = id.trim().split(';').next().unwrap().to_string();
    assert!(ok, "sbatch: {id}");
    let start = Instant::now();
    while !Checkpoint::open(&requeued).is_ok_and(|ck| ck.state.partial.is_some()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no mid-epoch checkpoint: {}",
            std::fs::read_to_string(&requeued_out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, text) = run(Command::new("scontrol").args(["requeue", &id]));
    assert!(ok, "scontrol requeue {id}: {text}");
    let state = wait_for_requeued(&id, Duration::from_secs(240));
    let out = read(&requeued_out);
    assert_eq!(state, "COMPLETED", "{out}");
    assert!(out.contains("batches into epoch 1"), "{out}");
    assert_eq!(final_line(&out), final_line(&read(&whole_out)));

    // Under --mpi=none the two tasks cannot see each other: refused, and
    // nothing is written.
    let (copies, copies_out) = (dir.join("copies"), dir.join("copies.out"));
    let (ok, _) = run(&mut train(
        &copies,
        &copies_out,
        &["--wait"],
        &[("MPI_PLUGIN", "none")],
    ));
    let out = read(&copies_out);
    assert!(!ok, "a launch under --mpi=none trained: {out}");
    assert!(
        out.contains("Slurm started 2 tasks (SLURM_STEP_NUM_TASKS=2), but MPI sees 1 rank")
            && out.contains("srun --mpi=pmix"),
        "{out}"
    );
    assert!(
        !copies.exists(),
        "the refused launch wrote {}",
        copies.display()
    );
}
