//! `cargo xtask bench preprocess`: images/s of the preprocess pipeline on a
//! train tar (given with --data, or generated with the synthetic ImageNet
//! generator at photo-like sizes), optionally against the Python peer
//! (`scripts/peers/preprocess_pillow.py`: Pillow with `draft` + h5py) on the
//! same tar, with a per-pixel comparison of the two outputs; or, with
//! `--layouts`, images/s of the same photos in every layout `preprocess
//! --from` reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use preprocess::{NoProgress, PreprocessConfig};
use synth::SynthConfig;

use crate::cmd_preprocess::{FilterArg, JpegScalingArg};
/// Default of `--work`.
const DEFAULT_WORK: &str = "target/bench-preprocess";
/// Default of `--workers`.
const DEFAULT_WORKERS: usize = 0;
/// Default of `--classes`.
const DEFAULT_CLASSES: usize = 8;
/// Default of `--train-per-class`.
const DEFAULT_TRAIN_PER_CLASS: usize = 150;
/// Default of `--min-side`.
const DEFAULT_MIN_SIDE: u32 = 333;
/// Default of `--max-side`.
const DEFAULT_MAX_SIDE: u32 = 500;
/// Default of `--peer-workers`.
const DEFAULT_PEER_WORKERS: usize = 2;

#[derive(ClapArgs)]
pub struct Args {
    /// Directory holding ILSVRC2012_img_train.tar (e.g. the real one, or
    /// `cargo xtask synth` output). When omitted, a synthetic train tar is
    /// generated into --work (kept and reused across runs).
    #[arg(long, conflicts_with = "photos")]
    data: Option<PathBuf>,
    /// A directory of real photos named `<wnid>_*.JPEG` (e.g. a clone of
    /// github.com/EliSchwartz/imagenet-sample-images): packed once into a
    /// train tar in ImageNet's layout under --work, `--repeats` times each,
    /// with one file of each odd and broken kind planted.
    #[arg(long)]
    photos: Option<PathBuf>,
    /// With --photos: how many times each photo is packed (under new names).
    #[arg(long, default_value_t = DEFAULT_REPEATS)]
    repeats: usize,
    /// Working directory: generated data and the outputs of both tools.
    #[arg(long, default_value = DEFAULT_WORK)]
    work: PathBuf,
    /// Decode/resize threads (0 = all cores).
    #[arg(long, default_value_t = DEFAULT_WORKERS)]
    workers: usize,
    /// Generated data: number of classes.
    #[arg(long, default_value_t = DEFAULT_CLASSES)]
    classes: usize,
    /// Generated data: train images per class.
    #[arg(long, default_value_t = DEFAULT_TRAIN_PER_CLASS)]
    train_per_class: usize,
    /// Generated data: smallest image side (ImageNet photos are mostly
    /// about 500x375).
    #[arg(long, default_value_t = DEFAULT_MIN_SIDE)]
    min_side: u32,
    /// Generated data: largest image side.
    #[arg(long, default_value_t = DEFAULT_MAX_SIDE)]
    max_side: u32,
    /// Resampling filter.
    #[arg(long, value_enum, default_value_t = FilterArg::Lanczos3)]
    filter: FilterArg,
    /// How JPEGs are decoded before the resize (see `preprocess --help`).
    #[arg(long, value_enum, default_value_t = JpegScalingArg::Draft)]
    jpeg_scaling: JpegScalingArg,
    /// Also run the Python peer (2 processes) on the same tar and compare
    /// its output with ours.
    #[arg(long)]
    peer: bool,
    /// Processes for the peer.
    #[arg(long, default_value_t = DEFAULT_PEER_WORKERS)]
    peer_workers: usize,
    /// Instead: the same generated photos in every layout `preprocess
    /// --from` reads (official files, extracted tree, Kaggle directory and
    /// zip, Hugging Face tar.gz and parquet), each converted in turn; images/s
    /// per layout and against the official files.
    #[arg(long, conflicts_with_all = ["peer", "data", "photos"])]
    layouts: bool,
    /// With --layouts: conversions per layout, the best one reported (the
    /// layouts take turns, so that a busy machine slows them alike).
    #[arg(long, default_value_t = DEFAULT_ROUNDS)]
    rounds: usize,
}

/// Rounds of the decode-only ceiling (the fastest is kept).
const CEILING_ROUNDS: usize = 2;
/// The goal against the peer ...
const GOAL_RATIO: f64 = 4.0;
/// ... or, where the decode-only ceiling is under it, this share of the ceiling.
const GOAL_CEILING_SHARE: f64 = 0.9;

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "not met"
    }
}

/// Default of `--repeats`.
const DEFAULT_REPEATS: usize = 1;

/// Default of `--rounds`.
const DEFAULT_ROUNDS: usize = 3;

/// The layouts `--layouts` compares, the official files first.
const LAYOUTS: [(synth::Layout, &str); 6] = [
    (synth::Layout::Official, "official"),
    (synth::Layout::Tree, "tree"),
    (synth::Layout::Kaggle, "kaggle"),
    (synth::Layout::KaggleZip, "kaggle-zip"),
    (synth::Layout::HfTar, "hf-tar"),
    (synth::Layout::HfParquet, "hf-parquet"),
];

/// The photos of `args` written in each layout (kept and reused); the
/// `--from` paths of each.
fn generate_layouts(args: &Args) -> anyhow::Result<Vec<Vec<PathBuf>>> {
    let cfg = synth_config(args);
    let base = args.work.join(format!(
        "layouts-{}x{}-{}-{}",
        args.classes, args.train_per_class, args.min_side, args.max_side
    ));
    let mut from = Vec::new();
    for (layout, name) in LAYOUTS {
        let dir = base.join(name);
        let opts = synth::LayoutOptions {
            // Hugging Face's files hold about 1/300 of the train set each.
            train_per_file: (args.classes * args.train_per_class).div_ceil(4),
            rows_per_group: synth::PARQUET_ROWS_PER_GROUP,
        };
        let tmp = dir.with_extension("partial");
        if !dir.exists() {
            eprintln!("generating {} ...", dir.display());
            let _ = std::fs::remove_dir_all(&tmp);
            synth::generate_layout_with(&tmp, &cfg, layout, opts)
                .with_context(|| format!("generating the {name} layout"))?;
            std::fs::rename(&tmp, &dir)?;
        }
        let paths = match layout {
            synth::Layout::Official => [synth::TRAIN_TAR, synth::VAL_TAR, synth::DEVKIT_TAR_GZ]
                .iter()
                .map(|f| dir.join(f))
                .collect(),
            synth::Layout::KaggleZip => vec![dir.join(synth::KAGGLE_ZIP)],
            _ => vec![dir.clone()],
        };
        from.push(paths);
    }
    Ok(from)
}

/// `--layouts`: images/s of each layout, best of `--rounds`.
fn run_layouts(args: &Args) -> anyhow::Result<()> {
    let from = generate_layouts(args)?;
    let mut best = vec![0f64; LAYOUTS.len()];
    let mut images = vec![0u64; LAYOUTS.len()];
    for round in 0..args.rounds.max(1) {
        for (i, (_, name)) in LAYOUTS.iter().enumerate() {
            let out = args.work.join(format!("out-{name}"));
            let _ = std::fs::remove_dir_all(&out);
            let mut cfg = PreprocessConfig::new(&out);
            cfg.from = from[i].clone();
            cfg.workers = args.workers;
            cfg.filter = args.filter.into();
            cfg.jpeg_scaling = args.jpeg_scaling.into();
            let s = preprocess::run(&cfg, &NoProgress)
                .with_context(|| format!("preprocessing the {name} layout"))?;
            eprintln!(
                "round {round} {name}: {} images in {:.2} s, {:.1} images/s",
                s.images(),
                s.seconds,
                s.images_per_second()
            );
            best[i] = best[i].max(s.images_per_second());
            images[i] = s.images();
        }
    }
    println!("layout        images   images/s   vs official");
    for (i, (_, name)) in LAYOUTS.iter().enumerate() {
        println!(
            "{name:<12} {:>7} {:>10.1} {:>12.3}",
            images[i],
            best[i],
            best[i] / best[0]
        );
    }
    Ok(())
}

fn synth_config(args: &Args) -> SynthConfig {
    SynthConfig {
        classes: args.classes,
        train_per_class: args.train_per_class,
        val_images: args.classes,
        min_side: args.min_side,
        max_side: args.max_side,
        seed: 2012,
        plant_odd_files: false,
        non_leaf_synsets: 2,
        jpeg_quality: 90,
        compress_meta: true,
    }
}

fn generate(args: &Args) -> anyhow::Result<PathBuf> {
    let cfg = synth_config(args);
    let dir = args.work.join(format!(
        "synth-{}x{}-{}-{}",
        args.classes, args.train_per_class, args.min_side, args.max_side
    ));
    let tar = dir.join(synth::TRAIN_TAR);
    if !tar.exists() {
        eprintln!("generating {} ...", dir.display());
        let tmp = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&tmp);
        synth::generate(&tmp, &cfg).context("generating the benchmark dataset")?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)?;
    }
    Ok(tar)
}

/// Peak resident set size (Linux `VmHWM`), in KiB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::without_huge_pages();
    if args.layouts {
        return run_layouts(&args);
    }
    let train_tar = match (&args.data, &args.photos) {
        (Some(d), _) => d.join(synth::TRAIN_TAR),
        (None, Some(photos)) => super::real_photos::pack(photos, &args.work, args.repeats)?
            .dir
            .join(synth::TRAIN_TAR),
        (None, None) => generate(&args)?,
    };
    if !train_tar.is_file() {
        bail!("{} not found", train_tar.display());
    }
    let ours = args.work.join("out-rust");
    let rust = run_ours(&args, &train_tar, &ours)?;
    let threads = match args.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    let ceiling = super::decode_ceiling::measure(
        &train_tar,
        threads,
        args.jpeg_scaling.into(),
        CEILING_ROUNDS,
    )?;
    let ceiling_cpu_ms = (cpu_seconds(libc::RUSAGE_SELF) - cpu0) * 1e3
        / (CEILING_ROUNDS * ceiling.images.max(1)) as f64;
    eprintln!(
        "decode-only ceiling (libjpeg-turbo at the same DCT scales, the same files from memory, \
         {threads} threads, fastest of {CEILING_ROUNDS}): {} images in {:.2} s, {:.1} images/s, \
         CPU {ceiling_cpu_ms:.2} ms per image; the pipeline reaches {:.0}% of it",
        ceiling.images,
        ceiling.seconds,
        ceiling.rate(),
        100.0 * rust.rate / ceiling.rate()
    );
    let rate = rust.rate;
    if !args.peer {
        println!(
            "preprocess: {rate:.1} images/s, {:.0}% of the decode-only ceiling ({:.1} images/s); \
             CPU per image {:.2} ms, ceiling {ceiling_cpu_ms:.2} ms",
            100.0 * rate / ceiling.rate(),
            ceiling.rate(),
            rust.cpu_ms
        );
        return Ok(());
    }
    let (peer_rate, peer_cpu_ms) = run_peer(&args, &train_tar, &ours)?;
    let (ratio, ceiling_ratio) = (rate / peer_rate, ceiling.rate() / peer_rate);
    let goal = if ceiling_ratio >= GOAL_RATIO {
        format!("goal {GOAL_RATIO}x the peer: {}", met(ratio >= GOAL_RATIO))
    } else {
        format!(
            "the ceiling is under {GOAL_RATIO}x the peer, goal {:.0}% of it: {}",
            100.0 * GOAL_CEILING_SHARE,
            met(rate >= GOAL_CEILING_SHARE * ceiling.rate())
        )
    };
    eprintln!(
        "CPU per image: ours {:.2} ms, peer {peer_cpu_ms:.2} ms ({:.2}x), decode-only ceiling \
         {ceiling_cpu_ms:.2} ms ({:.2}x the peer)",
        rust.cpu_ms,
        peer_cpu_ms / rust.cpu_ms,
        peer_cpu_ms / ceiling_cpu_ms
    );
    println!(
        "preprocess: {rate:.1} images/s, pillow peer {peer_rate:.1} images/s ({ratio:.2}x); \
         decode-only ceiling {:.1} images/s ({ceiling_ratio:.2}x the peer), reached {:.0}%; {goal}",
        ceiling.rate(),
        100.0 * rate / ceiling.rate()
    );
    Ok(())
}

/// User + system CPU seconds of this process (`RUSAGE_SELF`) or of its
/// waited-for descendants (`RUSAGE_CHILDREN`).
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Our run: images/s and CPU ms per image.
struct OurRun {
    rate: f64,
    cpu_ms: f64,
}

fn run_ours(args: &Args, train_tar: &Path, ours: &Path) -> anyhow::Result<OurRun> {
    let size = std::fs::metadata(train_tar)?.len();
    let _ = std::fs::remove_dir_all(ours);
    let mut cfg = PreprocessConfig::new(ours);
    cfg.train_tar = Some(train_tar.to_path_buf());
    cfg.workers = args.workers;
    cfg.filter = args.filter.into();
    cfg.jpeg_scaling = args.jpeg_scaling.into();
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    let summary = preprocess::run(&cfg, &NoProgress).context("preprocess run")?;
    let cpu_ms = (cpu_seconds(libc::RUSAGE_SELF) - cpu0) * 1e3 / summary.images().max(1) as f64;
    let rate = summary.images_per_second();
    eprintln!(
        "input {} ({:.1} MB, {} images, {:.1} KB per file)",
        train_tar.display(),
        size as f64 / 1e6,
        summary.images(),
        size as f64 / 1e3 / summary.images().max(1) as f64
    );
    eprintln!(
        "rust ({:?}, JPEG scaling {:?}): written {} images, skipped {}, {:.2} s, {:.1} images/s, \
         CPU {cpu_ms:.2} ms per image",
        args.filter,
        args.jpeg_scaling,
        summary.written_this_run(),
        summary.skipped(),
        summary.seconds,
        rate
    );
    if let Some(kb) = peak_rss_kb() {
        eprintln!("peak RSS of this process: {:.0} MB", kb as f64 / 1024.0);
    }
    Ok(OurRun { rate, cpu_ms })
}

/// The Pillow peer on the same tar, then the per-pixel comparison: its
/// images/s and CPU ms per image (the whole process tree).
fn run_peer(args: &Args, train_tar: &Path, ours: &Path) -> anyhow::Result<(f64, f64)> {
    let script = Path::new("scripts/peers/preprocess_pillow.py");
    let peer_out = args.work.join("out-pillow");
    let _ = std::fs::remove_dir_all(&peer_out);
    let cpu0 = cpu_seconds(libc::RUSAGE_CHILDREN);
    let out = Command::new("python3")
        .arg(script)
        .arg("run")
        .arg("--train-tar")
        .arg(train_tar)
        .arg("--out")
        .arg(&peer_out)
        .arg("--workers")
        .arg(args.peer_workers.to_string())
        .output()
        .context("running python3 scripts/peers/preprocess_pillow.py")?;
    let peer_cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - cpu0;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "peer failed: {}\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprint!("pillow peer: {stdout}");
    let peer_rate: f64 = stdout
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("parsing the peer's images/s")?;
    let peer_images: f64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("written ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN);
    let cmp = Command::new("python3")
        .arg(script)
        .arg("compare")
        .arg(ours)
        .arg(&peer_out)
        .output()
        .context("comparing outputs")?;
    eprint!(
        "{}{}",
        String::from_utf8_lossy(&cmp.stdout),
        String::from_utf8_lossy(&cmp.stderr)
    );
    Ok((peer_rate, peer_cpu * 1e3 / peer_images))
}
