//! `cargo xtask bench ranks`: data-parallel training on one machine, N
//! ranks under `mpirun` against one process with all the threads, in
//! alternating rounds: training images/s of one epoch each, and the share
//! of the ranks' training time spent in the gradient all-reduce. Needs a
//! binary built with the `mpi` feature and OpenMPI's `mpirun`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context};
use clap::Args as ClapArgs;

/// Default of `--model`.
const DEFAULT_MODEL: &str = "alexnet-small";
/// Default of `--batch-size`.
const DEFAULT_BATCH_SIZE: usize = 32;
/// Default of `--ranks`.
const DEFAULT_RANKS: usize = 2;
/// Default of `--threads`.
const DEFAULT_THREADS: usize = 2;
/// Default of `--rounds`.
const DEFAULT_ROUNDS: usize = 3;
/// Default of `--mpirun`.
const DEFAULT_MPIRUN: &str = "mpirun";

#[derive(ClapArgs)]
pub struct Args {
    /// Preprocessed data (`cargo xtask preprocess` output).
    #[arg(long, value_name = "OUT")]
    data: PathBuf,
    /// `alexnet-small` or `alexnet`.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// Global batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Ranks of the data-parallel run.
    #[arg(long, default_value_t = DEFAULT_RANKS)]
    ranks: usize,
    /// Threads in all: the single process gets them all (loader and
    /// compute), each rank its share.
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    threads: usize,
    /// Alternating rounds (medians are reported).
    #[arg(long, default_value_t = DEFAULT_ROUNDS)]
    rounds: usize,
    /// Scratch directory for the runs (when not given, a temporary directory).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// The MPI launcher.
    #[arg(long, default_value = DEFAULT_MPIRUN)]
    mpirun: String,
}

/// Figures of one run's epoch line.
struct EpochFigures {
    images_per_sec: f64,
    allreduce_share: f64,
}

fn parse_epoch_line(stdout: &str) -> anyhow::Result<EpochFigures> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("epoch 1/1:"))
        .context("no epoch line in the run's output")?;
    let number_before = |marker: &str| -> Option<f64> {
        let at = line.find(marker)?;
        line[..at]
            .rsplit([' ', ',', '|'])
            .find(|w| !w.is_empty())?
            .trim_end_matches('%')
            .parse()
            .ok()
    };
    Ok(EpochFigures {
        images_per_sec: number_before(" img/s").context("no img/s in the epoch line")?,
        allreduce_share: line
            .find("all-reduce ")
            .and_then(|at| line[at + 11..].split('%').next()?.parse::<f64>().ok())
            .map_or(0.0, |p| p / 100.0),
    })
}

fn train_args(args: &Args, run: &Path, threads: usize) -> Vec<String> {
    [
        "train",
        "--data",
        &args.data.to_string_lossy(),
        "--run-dir",
        &run.to_string_lossy(),
        "--model",
        &args.model,
        "--init",
        "pytorch",
        "--epochs",
        "1",
        "--batch-size",
        &args.batch_size.to_string(),
        "--threads",
        &threads.to_string(),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_command(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.ranks >= 2 && args.threads.is_multiple_of(args.ranks),
        "--ranks must be at least 2 and divide --threads"
    );
    let exe = std::env::current_exe().context("locating this binary")?;
    let tmp = tempfile::tempdir()?;
    let scratch = args
        .scratch
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let per_rank = args.threads / args.ranks;
    let (mut alone, mut ranked, mut shares) = (Vec::new(), Vec::new(), Vec::new());
    let mut summary = String::new();
    for round in 0..args.rounds.max(1) {
        let run = scratch.join(format!("round{round}-alone"));
        let mut cmd = Command::new(&exe);
        cmd.args(train_args(&args, &run, args.threads))
            .env("RAYON_NUM_THREADS", args.threads.to_string());
        let one = parse_epoch_line(&run_command(cmd, "the single-process run")?)?;

        let run = scratch.join(format!("round{round}-ranks"));
        let mut cmd = Command::new(&args.mpirun);
        cmd.args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(args.ranks.to_string())
            .args(["-x", &format!("RAYON_NUM_THREADS={per_rank}")])
            .arg(&exe)
            .args(train_args(&args, &run, per_rank));
        let stdout = run_command(cmd, "the mpirun run")?;
        if let Some(line) = stdout.lines().find(|l| l.starts_with("data parallel:")) {
            summary = line.to_string();
        }
        let many = parse_epoch_line(&stdout)?;
        println!(
            "round {}: 1 process x {} threads {:.1} img/s | {} ranks x {} threads {:.1} img/s, all-reduce {:.1}% of training time",
            round + 1,
            args.threads,
            one.images_per_sec,
            args.ranks,
            per_rank,
            many.images_per_sec,
            100.0 * many.allreduce_share
        );
        alone.push(one.images_per_sec);
        ranked.push(many.images_per_sec);
        shares.push(many.allreduce_share);
    }
    println!("{summary}");
    let (a, r) = (median(alone), median(ranked));
    println!(
        "{}, batch {}: {} ranks x {} threads {:.1} img/s (all-reduce {:.1}%) vs 1 process x {} threads {:.1} img/s: {:.2}x (medians of {} rounds)",
        args.model,
        args.batch_size,
        args.ranks,
        per_rank,
        r,
        100.0 * median(shares),
        args.threads,
        a,
        r / a,
        args.rounds.max(1)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_epoch_line() {
        let out = "training x\nepoch 1/1: train loss 1.0, top-1 2.00%, top-5 0.00% | val loss 1.0, top-1 1.00%, top-5 0.00% | lr 0.01 | 23.8 img/s, data wait 5.4%, all-reduce 46.3% | 2s + 0s val\nfinal";
        let f = parse_epoch_line(out).unwrap();
        assert_eq!(f.images_per_sec, 23.8);
        assert!((f.allreduce_share - 0.463).abs() < 1e-12);
        let alone = "epoch 1/1: x | lr 0.01 | 101.5 img/s, data wait 0.7% | 0s + 0s val";
        let f = parse_epoch_line(alone).unwrap();
        assert_eq!((f.images_per_sec, f.allreduce_share), (101.5, 0.0));
        assert!(parse_epoch_line("nothing").is_err());
    }
}
