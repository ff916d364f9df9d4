//! `cargo xtask train | eval | predict | quickstart`: thin layers over the
//! `trainer` crate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use trainer::{
    CheckpointEvalConfig, CheckpointEvery, Collective, Devices, GradientSums, NoEvents, Predictor,
    RunOptions, RunSettings, ScheduleKind, SingleProcess, TrainConfig, TrainOutcome, TrainSink,
};

use crate::train_progress::{EvalBars, TrainPrinter};

/// `--gradient-sums` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GradientSumsArg {
    /// NCCL when the devices are CUDA, the job has several ranks and the
    /// binary has the `nccl` feature; otherwise MPI through host memory.
    Auto,
    /// MPI through host memory.
    Host,
    /// NCCL, even for one rank alone (a check of the NCCL path against a
    /// process without sums).
    Nccl,
}

impl From<GradientSumsArg> for GradientSums {
    fn from(a: GradientSumsArg) -> Self {
        match a {
            GradientSumsArg::Auto => Self::Auto,
            GradientSumsArg::Host => Self::Host,
            GradientSumsArg::Nccl => Self::Nccl,
        }
    }
}

/// `--schedule` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// Divide the rate by 10 when the validation top-1 error has not improved
    /// for --patience epochs (the paper), at most --max-reductions times.
    Plateau,
    /// Divide the rate by 10 every --step-epochs epochs, at most --max-reductions times.
    Step,
}

/// Train AlexNet on the shards of `cargo xtask preprocess` with the paper's
/// recipe. Prints a line per epoch; the last line is
/// `final: epoch E, val top-1 error X%, top-5 error Y%`.
///
/// Data parallel on several processes: start it with `mpirun -np N` or
/// `srun` (a binary built with `--features mpi`). Each rank trains on
/// 1/N of every batch and the gradients are summed over the ranks; only
/// rank 0 prints and writes files.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The output directory of `cargo xtask preprocess` (train/, val/,
    /// stats.h5, classes.tsv). With --resume, the run's own dataset when
    /// not given.
    #[arg(long, value_name = "OUT", required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Where metrics, the plot and checkpoints go (when not given,
    /// runs/<model>-<unix time>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its newest checkpoint, exactly
    /// where it stopped (network, seed, batch size and schedule come from
    /// it; flags that repeat the run's own values are accepted, others are
    /// refused). With no checkpoint there yet, start the run from the
    /// beginning: one job script serves the first start and every restart.
    #[arg(long, requires = "run_dir")]
    pub resume: bool,
    /// Also checkpoint inside each epoch: every N optimizer steps (`500`),
    /// or after a time (`30m`, `90s`, `2h`); `epoch` only at the end of
    /// each epoch. A job killed without warning loses at most this much.
    #[arg(long, default_value_t = CheckpointEvery::default(), value_name = "STEPS|TIME")]
    pub checkpoint_every: CheckpointEvery,
    /// TensorBoard: write the training loss, top-1 error, learning rate,
    /// images/s and data-wait share every N optimizer steps to
    /// RUN_DIR/tensorboard/ (each epoch's metrics.csv row and the conv1
    /// kernels are written at every epoch's end); 0 writes no event files.
    /// Follow runs with `tensorboard --logdir runs/`.
    #[arg(long, default_value_t = trainer::DEFAULT_TENSORBOARD_EVERY, value_name = "N")]
    pub tensorboard_every: u64,
    /// Several ranks: seconds one rank waits in a gradient all-reduce for
    /// the others before it ends the job (a rank that hangs rather than dies).
    #[arg(long, default_value_t = trainer::DEFAULT_COLLECTIVE_TIMEOUT.as_secs(), value_name = "SECONDS")]
    pub collective_timeout: u64,
    /// What sums the gradients of several ranks: `auto` (NCCL on CUDA
    /// devices in a build with the `nccl` feature, else MPI through host
    /// memory), `host` (MPI), or `nccl` (also for one process alone: a
    /// check of the NCCL path).
    #[arg(long, value_enum, default_value_t = GradientSumsArg::Auto)]
    pub gradient_sums: GradientSumsArg,
    /// `alexnet` (the paper's two-tower net, the default) or
    /// `alexnet-small` (quarter width).
    #[arg(long)]
    pub model: Option<String>,
    /// Parameter initialisation: `paper` (N(0, 0.01), some biases 1; the
    /// default) or `pytorch`.
    #[arg(long)]
    pub init: Option<String>,
    /// The non-linearity after every convolution and fc6/fc7: `relu` (the
    /// paper's, the default) or `tanh` (the saturating units of the
    /// paper's Figure 1).
    #[arg(long)]
    pub activation: Option<String>,
    /// Tower placement: `cpu`, `cuda:0`, or `cuda:0,cuda:1`. With several
    /// ranks per node this is local rank 0's; rank k shifts the CUDA
    /// numbers by k times the devices named (`cuda:0,cuda:1` gives local
    /// rank 1 `cuda:2,cuda:3`).
    #[arg(long, default_value_t = Devices::default())]
    pub devices: Devices,
    /// Precision of `f32` products on CUDA: `fp32` (full float32, the
    /// paper's) or `tf32` (tensor cores in cuBLAS and cuDNN).
    #[arg(long, default_value_t = model::Precision::default())]
    pub precision: model::Precision,
    /// Epochs in all (a resumed run continues up to this number).
    #[arg(long, default_value_t = trainer::DEFAULT_EPOCHS)]
    pub epochs: usize,
    /// Images per batch over all ranks together (each of N ranks takes
    /// batch/N of them). A new run's default is the paper's 128; a
    /// resumed run keeps its own, as for every setting below.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Initial learning rate (the paper's 0.01).
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum (the paper's 0.9).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (the paper's 0.0005).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule (plateau, the paper's).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Plateau schedule: epochs without a new best validation error before
    /// dividing the rate by 10 (3).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Step schedule: epochs between reductions (30).
    #[arg(long)]
    pub step_epochs: Option<usize>,
    /// Most reductions of the learning rate (the paper's 3).
    #[arg(long)]
    pub max_reductions: Option<usize>,
    /// Seed of initialisation, data order, augmentation and dropout (0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Loader threads per rank (when not given, the cores this process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Batches the loader may prepare ahead.
    #[arg(long, default_value_t = trainer::DEFAULT_PREFETCH)]
    pub prefetch: usize,
    /// Stop (with a checkpoint of the exact position, as Ctrl-C does) after
    /// this many optimizer steps in all; continue later with --resume.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Evaluate a checkpoint on the validation shards: centre crop, and the
/// paper's 10-crop test with --ten-crop. The last line is
/// `top-1 error X%, top-5 error Y%` (centre crop).
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory (its newest checkpoint) or a checkpoint directory.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// The preprocess output (when not given, the directory the run trained on).
    #[arg(long, value_name = "OUT")]
    pub data: Option<PathBuf>,
    /// Also the 10-crop test: 4 corners + centre and their mirror images,
    /// softmax averaged.
    #[arg(long)]
    pub ten_crop: bool,
    /// Tower placement: `cpu`, `cuda:0`, or `cuda:0,cuda:1`.
    #[arg(long, default_value_t = Devices::default())]
    pub devices: Devices,
    /// Images per batch (10-crop batches hold a tenth as many images).
    #[arg(long, default_value_t = trainer::DEFAULT_EVAL_BATCH)]
    pub batch_size: usize,
    /// Loader threads (when not given, the cores this process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write each class's top-1 and top-5 error (centre crop) with its
    /// words to this file (tab-separated, worst class first).
    #[arg(long, value_name = "FILE")]
    pub per_class: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Classify photos (JPEG or PNG) with a checkpoint: shorter side to 256,
/// centre crop, mean image subtracted, as in training; prints the top
/// classes with their words and probabilities.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run directory (its newest checkpoint) or a checkpoint directory.
    /// The checkpoint directory holds copies of classes.tsv and stats.h5.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Take classes.tsv and stats.h5 from this preprocess output instead of
    /// the checkpoint's copies.
    #[arg(long, value_name = "OUT")]
    pub data: Option<PathBuf>,
    /// Tower placement: `cpu`, `cuda:0`, or `cuda:0,cuda:1`.
    #[arg(long, default_value_t = Devices::default())]
    pub devices: Devices,
    /// Classes to show per image.
    #[arg(long, default_value_t = trainer::DEFAULT_TOP)]
    pub top: usize,
    /// The image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// No ImageNet needed: synthesise a small ImageNet-layout dataset,
/// preprocess it, train alexnet-small on the CPU, evaluate it.
#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Working directory: synthetic files, shards and the run go here.
    #[arg(long, default_value = trainer::QUICKSTART_DIR)]
    pub dir: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = trainer::QUICKSTART_EPOCHS)]
    pub epochs: usize,
    /// Loader (and preprocess) threads (when not given, the cores this
    /// process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Tower placement: `cpu`, `cuda:0`, or `cuda:0,cuda:1`.
    #[arg(long, default_value_t = Devices::default())]
    pub devices: Devices,
}

/// Ctrl-C sets the flag (the trainer checkpoints and stops between
/// batches); a second Ctrl-C exits at once.
fn install_stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this batch: writing a checkpoint (Ctrl-C again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

fn run_settings(args: &TrainArgs) -> anyhow::Result<RunSettings> {
    Ok(RunSettings {
        model: args.model.clone(),
        activation: args.activation.as_deref().map(str::parse).transpose()?,
        init: args.init.as_deref().map(str::parse).transpose()?,
        batch_size: args.batch_size,
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        schedule: args.schedule.map(|s| match s {
            ScheduleArg::Plateau => ScheduleKind::Plateau,
            ScheduleArg::Step => ScheduleKind::Step,
        }),
        patience: args.patience,
        step_epochs: args.step_epochs,
        max_reductions: args.max_reductions,
        seed: args.seed,
    })
}

fn train_config(args: &TrainArgs) -> anyhow::Result<TrainConfig> {
    Ok(TrainConfig::for_run(&RunOptions {
        data: args.data.clone(),
        run_dir: args.run_dir.clone(),
        resume: args.resume,
        settings: run_settings(args)?,
        devices: args.devices.clone(),
        precision: args.precision,
        epochs: args.epochs,
        threads: args.threads,
        prefetch: args.prefetch,
        checkpoint_every: args.checkpoint_every,
        stop_at_step: args.max_steps,
        tensorboard_every: args.tensorboard_every,
    })?)
}

fn pct(x: f64) -> String {
    format!("{x:.2}%")
}

/// Prints where things are and the last lines scripts rely on.
fn report_outcome(out: &TrainOutcome, stopped_by_user: bool) -> anyhow::Result<()> {
    if out.interrupted {
        let ck = out
            .checkpoint
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string());
        println!("checkpoint: {ck}");
        println!("run directory: {}", out.run_dir.display());
        let epochs = out.history.len();
        println!(
            "stopped after {epochs} complete epoch{}; continue with: cargo xtask train --run-dir {} --resume --epochs N",
            if epochs == 1 { "" } else { "s" },
            out.run_dir.display()
        );
        if stopped_by_user {
            std::process::exit(130);
        }
        return Ok(());
    }
    let last = out
        .history
        .last()
        .context("the run finished without a completed epoch")?;
    println!("metrics: {}", out.metrics_path().display());
    println!("plot: {}", out.plot_path().display());
    let events = trainer::tensorboard::tensorboard_dir(&out.run_dir);
    if events.is_dir() {
        // The directory of all runs, so that they show side by side.
        let runs = match out.run_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        println!(
            "tensorboard: {} (follow with: tensorboard --logdir {})",
            events.display(),
            runs.display()
        );
    }
    if let Some(ck) = &out.checkpoint {
        println!("checkpoint: {}", ck.display());
    }
    println!("run directory: {}", out.run_dir.display());
    println!(
        "final: epoch {}, val top-1 error {}, top-5 error {}",
        last.epoch,
        pct(last.val_top1_error),
        pct(last.val_top5_error)
    );
    Ok(())
}

pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let cfg = train_config(&args)?;
    let stop = install_stop_flag()?;
    let collective = trainer::job_collective(
        &cfg.devices,
        args.gradient_sums.into(),
        std::time::Duration::from_secs(args.collective_timeout),
    )?;
    let collective: &dyn Collective = collective.as_ref();
    let printer = TrainPrinter::new(!args.quiet);
    let sink: &dyn TrainSink = if collective.rank() == 0 {
        &printer
    } else {
        &NoEvents
    };
    let result =
        trainer::Trainer::new(cfg.clone(), collective).and_then(|mut t| t.run(&stop, sink));
    match result {
        Ok(out) if collective.rank() == 0 => report_outcome(&out, stop.load(Ordering::SeqCst)),
        Ok(_) => Ok(()),
        Err(e) if collective.world_size() > 1 => {
            // The other ranks may be waiting in a collective: end them all.
            eprintln!(
                "rank {} of {}: error: {e}; ending the job",
                collective.rank(),
                collective.world_size()
            );
            collective.abort(1)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let eval = CheckpointEvalConfig {
        checkpoint: args.checkpoint.clone(),
        data_dir: args.data.clone(),
        devices: args.devices.clone(),
        batch_size: args.batch_size,
        threads: args.threads.unwrap_or_else(trainer::default_threads),
        ten_crop: args.ten_crop,
    };
    let bars = EvalBars::new(!args.quiet);
    let result = trainer::evaluate_checkpoint(&eval, &bars)?;
    drop(bars);
    print_eval(&result);
    if let Some(path) = &args.per_class {
        let classes = args
            .data
            .as_deref()
            .and_then(|d| loader::read_classes(d).ok())
            .map_or_else(|| loader::read_classes(&result.checkpoint.dir), Ok)
            .context("reading the class table")?;
        result
            .centre
            .per_class
            .write_tsv(path, &classes)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("per-class errors: {}", path.display());
    }
    Ok(())
}

fn print_eval(result: &trainer::CheckpointEval) {
    let ck = &result.checkpoint;
    println!(
        "checkpoint {} ({}, epoch {}, step {})",
        ck.dir.display(),
        ck.state.architecture.name,
        ck.state.epochs_done,
        ck.state.step
    );
    let c = &result.centre.counter;
    if let Some(t) = &result.ten_crop {
        println!(
            "10-crop: top-1 error {}, top-5 error {} ({} images, loss {:.4})",
            pct(t.counter.top1_error()),
            pct(t.counter.top5_error()),
            t.counter.images,
            t.counter.mean_loss()
        );
    }
    println!(
        "centre crop: {} images, loss {:.4}",
        c.images,
        c.mean_loss()
    );
    println!(
        "top-1 error {}, top-5 error {}",
        pct(c.top1_error()),
        pct(c.top5_error())
    );
}

pub fn run_predict(args: PredictArgs) -> anyhow::Result<()> {
    let predictor = Predictor::open(&args.checkpoint, args.data.as_deref(), &args.devices)?;
    for path in &args.images {
        let top = predictor
            .predict_file(path, args.top)
            .with_context(|| format!("classifying {}", path.display()))?;
        println!("{}:", path.display());
        for (rank, c) in top.iter().enumerate() {
            println!(
                "  {}. {:6.2}%  {}  {}",
                rank + 1,
                100.0 * c.probability,
                c.wnid,
                c.words
            );
        }
    }
    Ok(())
}

pub fn run_quickstart(args: QuickstartArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let threads = args.threads.unwrap_or_else(trainer::default_threads);
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = dir.join("shards");
    let run_dir = dir.join("run");
    let tars = quickstart_dataset(&dir.join("imagenet-synthetic"))?;
    quickstart_preprocess(tars, &data, threads)?;

    // 3. Train alexnet-small on the CPU.
    if run_dir.exists() {
        println!(
            "removing the previous quick-start run {}",
            run_dir.display()
        );
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("removing {}", run_dir.display()))?;
    }
    let cfg = TrainConfig::quickstart(&RunOptions {
        data: Some(data.clone()),
        run_dir: Some(run_dir.clone()),
        devices: args.devices.clone(),
        epochs: args.epochs,
        threads: Some(threads),
        ..RunOptions::default()
    })?;
    println!(
        "[3/4] training alexnet-small on {} for {} epochs (init pytorch, batch {}, lr {} for one epoch, then {})",
        cfg.devices,
        cfg.epochs,
        cfg.batch_size,
        trainer::QUICKSTART_LR,
        trainer::QUICKSTART_LR / 10.0
    );
    let stop = install_stop_flag()?;
    let out =
        trainer::Trainer::new(cfg.clone(), &SingleProcess)?.run(&stop, &TrainPrinter::new(true))?;
    if out.interrupted {
        return report_outcome(&out, stop.load(Ordering::SeqCst));
    }

    // 4. Evaluate the final checkpoint, centre crop and 10-crop.
    println!("[4/4] evaluating the final checkpoint");
    let bars = EvalBars::new(true);
    let result = trainer::evaluate_checkpoint(
        &CheckpointEvalConfig {
            checkpoint: run_dir.clone(),
            data_dir: Some(data.clone()),
            devices: args.devices.clone(),
            batch_size: cfg.batch_size,
            threads,
            ten_crop: true,
        },
        &bars,
    )?;
    drop(bars);
    print_eval(&result);
    let classes = result.checkpoint.state.num_classes;
    println!(
        "chance would be {:.1}% top-1 error ({} classes); quick start took {:.0} s",
        100.0 * (1.0 - 1.0 / classes as f64),
        classes,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "next: cargo xtask predict --checkpoint {} <photo.jpg>",
        run_dir.display()
    );
    report_outcome(&out, false)
}

/// The quick start's three ImageNet files: train tar, val tar, devkit.
type QuickstartFiles = (PathBuf, PathBuf, PathBuf);

/// 1. A synthetic dataset in ImageNet's three-file layout in `synth_dir`
///    (kept from an earlier quick start).
fn quickstart_dataset(synth_dir: &std::path::Path) -> anyhow::Result<QuickstartFiles> {
    let synth_cfg = quickstart_synth_config();
    let train_tar = synth_dir.join(synth::TRAIN_TAR);
    let val_tar = synth_dir.join(synth::VAL_TAR);
    let devkit = synth_dir.join(synth::DEVKIT_TAR_GZ);
    if train_tar.is_file() && val_tar.is_file() && devkit.is_file() {
        println!("[1/4] synthetic ImageNet: reusing {}", synth_dir.display());
    } else {
        println!(
            "[1/4] synthesising an ImageNet-layout dataset ({} classes x {} train images, {} val) in {}",
            synth_cfg.classes,
            synth_cfg.train_per_class,
            synth_cfg.val_images,
            synth_dir.display()
        );
        synth::generate(synth_dir, &synth_cfg)
            .with_context(|| format!("generating {}", synth_dir.display()))?;
    }
    Ok((train_tar, val_tar, devkit))
}

/// 2. Preprocess into `data`: the same command as for ImageNet (resumes
///    if done).
fn quickstart_preprocess(
    (train_tar, val_tar, devkit): QuickstartFiles,
    data: &std::path::Path,
    threads: usize,
) -> anyhow::Result<()> {
    println!("[2/4] preprocessing into {}", data.display());
    let mut pcfg = preprocess::PreprocessConfig::new(data);
    pcfg.train_tar = Some(train_tar);
    pcfg.val_tar = Some(val_tar);
    pcfg.devkit = Some(devkit);
    pcfg.workers = threads;
    let bars = crate::cmd_preprocess::BarProgress::default();
    let summary = match preprocess::run(&pcfg, &bars) {
        // Shards of an earlier quick start, written with other options
        // (an older version's): they are the quick start's own, so convert
        // again rather than stop.
        Err(preprocess::PreprocessError::DifferentDataset { reason, .. }) => {
            println!(
                "      {} holds shards written differently ({reason}); converting again",
                data.display()
            );
            std::fs::remove_dir_all(data)
                .with_context(|| format!("removing {}", data.display()))?;
            preprocess::run(&pcfg, &crate::cmd_preprocess::BarProgress::default())
        }
        other => other,
    }
    .with_context(|| format!("preprocessing into {}", data.display()))?;
    println!("{}", crate::cmd_preprocess::summary_line(&summary));
    Ok(())
}

/// The synthetic dataset of the quick start: the preprocess crate's
/// preset (10 classes, odd files planted), with 200 train images per class
/// and 300 val images so that training fits in a few minutes on 2 cores.
fn quickstart_synth_config() -> synth::SynthConfig {
    synth::SynthConfig {
        train_per_class: 200,
        val_images: 300,
        ..synth::SynthConfig::quickstart()
    }
}
