//! The training loop: loader batches into the network, the paper's SGD,
//! per-epoch validation, metrics, plot, checkpoints and resume.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loader::{Dataset, Loader, LoaderConfig, Stats};
use model::{AlexNet, ForwardMode, Init, PaperSgd, Placement, Precision};

use crate::arch::Architecture;
use crate::checkpoint::{self, Checkpoint, CheckpointState, PartialEpoch, FORMAT_VERSION};
use crate::error::{io_err, Result, TrainerError};
use crate::evaluate::{evaluate, EvalOptions};
use crate::metrics::{EpochMetrics, MetricsFiles};
use crate::plot::draw_curves;
use crate::schedule::{LrDecision, LrSchedule};
use crate::topk::TopKCounter;

/// Everything a training run is told. Defaults ([`TrainConfig::paper`]) are the paper's.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// `cargo xtask preprocess` output: `train/`, `val/`, `stats.h5`, `classes.tsv`.
    pub data_dir: PathBuf,
    /// Where metrics, plot and checkpoints go.
    pub run_dir: PathBuf,
    /// The network's shapes.
    pub architecture: Architecture,
    /// Parameter initialisation.
    pub init: Init,
    /// Tower placement: `cpu`, `cuda:0`, `cuda:0,cuda:1`.
    pub devices: String,
    /// Precision of `f32` matrix products and convolutions on CUDA
    /// (`fp32`, the default, or `tf32`); set process-wide for the run.
    pub precision: Precision,
    /// Epochs to train in all (a resumed run continues up to this number).
    pub epochs: usize,
    /// Images per batch (paper: 128).
    pub batch_size: usize,
    /// SGD momentum (paper: 0.9).
    pub momentum: f64,
    /// SGD weight decay (paper: 0.0005).
    pub weight_decay: f64,
    /// Learning-rate schedule with its initial rate (paper: 0.01, plateau).
    pub schedule: LrSchedule,
    /// Seeds initialisation, data order, augmentation and dropout.
    pub seed: u64,
    /// Loader worker threads.
    pub threads: usize,
    /// Batches the loader may finish ahead of the trainer.
    pub prefetch: usize,
    /// Continue from the newest checkpoint in `run_dir`.
    pub resume: bool,
    /// Draw progress bars and print a line per epoch (on stderr/stdout).
    pub verbose: bool,
    /// Stop as on Ctrl-C once this many optimizer steps are done in all
    /// (checkpoint of the exact position, `interrupted` outcome). For
    /// time-boxed runs and tests; `None` trains all epochs.
    pub stop_at_step: Option<u64>,
}

impl TrainConfig {
    /// The paper's recipe for `architecture` on `data_dir`, writing to `run_dir`:
    /// 90 epochs, batch 128, lr 0.01 divided by 10 on a plateau of the
    /// validation error (patience 3, at most three times), momentum 0.9,
    /// weight decay 0.0005, paper initialisation, CPU.
    pub fn paper(data_dir: &Path, run_dir: &Path, architecture: Architecture) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            architecture,
            init: Init::Paper,
            devices: "cpu".into(),
            precision: Precision::Fp32,
            epochs: 90,
            batch_size: 128,
            momentum: 0.9,
            weight_decay: 0.0005,
            schedule: LrSchedule::plateau(0.01, 3),
            seed: 0,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefetch: 2,
            resume: false,
            verbose: true,
            stop_at_step: None,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Metrics of every completed epoch (including those before a resume).
    pub history: Vec<EpochMetrics>,
    /// The newest checkpoint directory.
    pub checkpoint: Option<PathBuf>,
    /// True when the run stopped early because `stop` was set (a checkpoint
    /// of the exact position was written; `--resume` continues from it).
    pub interrupted: bool,
}

impl TrainOutcome {
    /// `metrics.jsonl` of the run.
    pub fn metrics_path(&self) -> PathBuf {
        MetricsFiles::new(&self.run_dir).jsonl_path().to_path_buf()
    }
    /// `curves.png` of the run.
    pub fn plot_path(&self) -> PathBuf {
        self.run_dir.join(PLOT_FILE)
    }
}

/// File name of the loss/error plot in the run directory.
pub const PLOT_FILE: &str = "curves.png";

/// The seed of one training step's dropout masks: a hash of the run seed,
/// the epoch and the global step, so resumed runs draw the same masks.
pub fn dropout_seed(seed: u64, epoch: usize, step: u64) -> u64 {
    let mut z = seed ^ 0xD1B5_4A32_D192_ED03;
    for v in [epoch as u64, step] {
        z = splitmix(z ^ splitmix(v.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    }
    z
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn data_err(e: loader::LoaderError) -> TrainerError {
    TrainerError::Data(e.to_string())
}

/// Trains as `cfg` says until `cfg.epochs` epochs are done, or `stop` is
/// set (checked between batches: the exact position is checkpointed and
/// the run returns with `interrupted`), or the loss diverges (an error
/// naming the step; the last good checkpoint stays).
pub fn train(cfg: &TrainConfig, stop: &AtomicBool) -> Result<TrainOutcome> {
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(TrainerError::Config(
            "batch size and epochs must be at least 1".into(),
        ));
    }
    std::fs::create_dir_all(&cfg.run_dir).map_err(io_err(&cfg.run_dir))?;

    // Resume state, or a fresh one.
    let resumed = if cfg.resume {
        let ck = checkpoint::latest(&cfg.run_dir)?.ok_or_else(|| TrainerError::Checkpoint {
            path: cfg.run_dir.clone(),
            reason: "--resume: this run directory has no checkpoint yet".into(),
        })?;
        check_resume_matches(cfg, &ck)?;
        Some(ck)
    } else {
        if checkpoint::latest(&cfg.run_dir)?.is_some() {
            return Err(TrainerError::Config(format!(
                "{} already holds a run's checkpoints: pass --resume to continue it, \
                 or choose another --run-dir",
                cfg.run_dir.display()
            )));
        }
        None
    };

    // Data.
    let classes = loader::read_classes(&cfg.data_dir).map_err(data_err)?;
    let num_classes = classes.len();
    let classes_src = loader::format::classes_path(&cfg.data_dir);
    let stats_src = loader::format::stats_path(&cfg.data_dir);
    let stats = Stats::open(&stats_src).map_err(data_err)?;
    let train_ds =
        Dataset::open(&loader::format::split_dir(&cfg.data_dir, "train")).map_err(data_err)?;
    let val_ds =
        Dataset::open(&loader::format::split_dir(&cfg.data_dir, "val")).map_err(data_err)?;
    let crop = cfg.architecture.input_size;
    let train_loader = Loader::new(
        train_ds,
        stats.clone(),
        LoaderConfig {
            batch_size: cfg.batch_size,
            seed: cfg.seed,
            threads: cfg.threads.max(1),
            prefetch: cfg.prefetch,
            crop,
            ..LoaderConfig::train()
        },
    )
    .map_err(data_err)?;
    let val_loader = Loader::new(
        val_ds,
        stats,
        LoaderConfig {
            batch_size: cfg.batch_size,
            threads: cfg.threads.max(1),
            prefetch: cfg.prefetch,
            crop,
            ..LoaderConfig::eval()
        },
    )
    .map_err(data_err)?;

    // Network and optimizer.
    let placement = Placement::parse(&cfg.devices)?;
    model::set_precision(cfg.precision);
    let model_cfg = cfg.architecture.to_config(num_classes);
    let mut varmap = VarMap::new();
    let net = AlexNet::new(&varmap, &model_cfg, &placement, cfg.init, cfg.seed)?;
    let mut sgd = PaperSgd::new(&varmap, cfg.schedule.lr(), cfg.momentum, cfg.weight_decay)?;

    let mut state = match &resumed {
        Some(ck) => {
            ck.load_params(&mut varmap)?;
            sgd.load_momentum_state(&ck.load_momentum()?).map_err(|e| {
                TrainerError::Checkpoint {
                    path: ck.momentum_path(),
                    reason: e.to_string(),
                }
            })?;
            let mut s = ck.state.clone();
            s.epochs = cfg.epochs;
            s
        }
        None => CheckpointState {
            format_version: FORMAT_VERSION,
            architecture: cfg.architecture.clone(),
            num_classes,
            init: cfg.init.to_string(),
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            momentum: cfg.momentum,
            weight_decay: cfg.weight_decay,
            epochs: cfg.epochs,
            schedule: cfg.schedule.clone(),
            epochs_done: 0,
            step: 0,
            partial: None,
            metrics: Vec::new(),
            data_dir: std::fs::canonicalize(&cfg.data_dir).unwrap_or(cfg.data_dir.clone()),
        },
    };
    if state.num_classes != num_classes {
        return Err(TrainerError::Checkpoint {
            path: cfg.run_dir.clone(),
            reason: format!(
                "trained on {} classes, but {} has {num_classes}",
                state.num_classes,
                classes_src.display()
            ),
        });
    }

    let metrics_files = MetricsFiles::new(&cfg.run_dir);
    metrics_files.write(&state.metrics)?;
    if !state.metrics.is_empty() {
        draw_curves(&cfg.run_dir.join(PLOT_FILE), &state.metrics)?;
    }
    let extra: [&Path; 2] = [&classes_src, &stats_src];
    let mut last_checkpoint = resumed.as_ref().map(|c| c.dir.clone());
    let input_device = placement.tower_a.clone();

    if cfg.verbose {
        let params = net.num_parameters();
        println!(
            "training {} ({} parameters, {} classes, init {}, {}) on {} ({}) | {} train / {} val images | batch {} | {} batches per epoch",
            cfg.architecture.name,
            params,
            num_classes,
            state.init,
            cfg.architecture.activation,
            cfg.devices,
            cfg.precision,
            train_loader.images_per_epoch(),
            val_loader.images_per_epoch(),
            state.batch_size,
            train_loader.batches_per_epoch()
        );
        if let Some(ck) = &resumed {
            println!(
                "resuming from {} (epoch {} done, step {}{})",
                ck.dir.display(),
                ck.state.epochs_done,
                ck.state.step,
                match &ck.state.partial {
                    Some(p) => format!(
                        ", {} batches into epoch {}",
                        p.batches_done,
                        ck.state.epochs_done + 1
                    ),
                    None => String::new(),
                }
            );
        }
    }

    while state.epochs_done < cfg.epochs {
        let epoch = state.epochs_done; // 0-based index of the epoch being trained
        let lr = state.schedule.lr();
        sgd.set_lr(lr);
        let partial = state.partial.take();
        let skip = partial.as_ref().map_or(0, |p| p.batches_done);
        let mut counter = partial
            .as_ref()
            .map_or(TopKCounter::default(), |p| p.counter);
        let mut train_time =
            Duration::from_secs_f64(partial.as_ref().map_or(0.0, |p| p.train_seconds));
        let mut wait_time =
            Duration::from_secs_f64(partial.as_ref().map_or(0.0, |p| p.wait_seconds));

        let bar = progress_bar(cfg.verbose, train_loader.batches_per_epoch() as u64);
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, cfg.epochs));
        bar.set_position(skip as u64);

        let mut batches = train_loader.epoch(epoch as u64).map_err(data_err)?;
        let mut b = 0usize;
        let mut last = Instant::now();
        loop {
            let fetched = batches.next();
            let waited = last.elapsed();
            let Some(batch) = fetched else { break };
            let batch = batch.map_err(data_err)?;
            if b < skip {
                b += 1;
                last = Instant::now();
                continue;
            }
            if stop.load(Ordering::SeqCst) || cfg.stop_at_step.is_some_and(|s| state.step >= s) {
                drop(batch);
                state.partial = Some(PartialEpoch {
                    batches_done: b,
                    counter,
                    train_seconds: train_time.as_secs_f64(),
                    wait_seconds: wait_time.as_secs_f64(),
                });
                bar.abandon();
                let dir =
                    checkpoint::save(&cfg.run_dir, &state, &varmap, &sgd.momentum_state(), &extra)?;
                return Ok(TrainOutcome {
                    run_dir: cfg.run_dir.clone(),
                    history: state.metrics.clone(),
                    checkpoint: Some(dir),
                    interrupted: true,
                });
            }
            wait_time += waited;
            let step_start = Instant::now();

            let (images, labels) = batch.to_tensors(&input_device)?;
            let n = batch.len();
            drop(batch);
            let logits = net.forward(
                &images,
                ForwardMode::Train {
                    dropout_seed: dropout_seed(state.seed, epoch, state.step),
                },
            )?;
            let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
            // Backward and update are queued before the loss is read back,
            // so that on a GPU the host does not wait for the forward pass
            // in the middle of the step (a diverged step's update never
            // reaches a checkpoint: the run stops here).
            let grads = loss.backward()?;
            sgd.step(&grads)?;
            drop(grads);
            let loss_value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                bar.abandon();
                return Err(TrainerError::Diverged {
                    loss: loss_value,
                    step: state.step,
                    epoch: epoch + 1,
                    batch: b,
                    last_checkpoint,
                });
            }
            let scores = logits
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let labels_cpu = labels.to_device(&Device::Cpu)?.to_vec1::<i64>()?;
            counter.add_scores(&scores, num_classes, &labels_cpu)?;
            counter.add_loss(loss_value as f64, n);
            state.step += 1;
            train_time += waited + step_start.elapsed();
            b += 1;

            let secs = train_time.as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4} (last {:.4}) | {:.1} img/s | data wait {:.1}%",
                counter.mean_loss(),
                loss_value,
                counter.images as f64 / secs,
                100.0 * wait_time.as_secs_f64() / secs
            ));
            bar.inc(1);
            last = Instant::now();
        }
        drop(batches);
        bar.finish_and_clear();
        if b != train_loader.batches_per_epoch() {
            return Err(TrainerError::Data(format!(
                "epoch {} ended after {b} of {} batches",
                epoch + 1,
                train_loader.batches_per_epoch()
            )));
        }

        let val_start = Instant::now();
        let val = evaluate(
            &net,
            &val_loader,
            &EvalOptions {
                progress: cfg.verbose,
                label: format!("val {}/{}", epoch + 1, cfg.epochs),
            },
        )?;
        let val_seconds = val_start.elapsed().as_secs_f64();
        let train_seconds = train_time.as_secs_f64();
        let m = EpochMetrics {
            epoch: epoch + 1,
            step: state.step,
            lr,
            train_loss: counter.mean_loss(),
            train_top1_error: counter.top1_error(),
            train_top5_error: counter.top5_error(),
            val_loss: val.counter.mean_loss(),
            val_top1_error: val.counter.top1_error(),
            val_top5_error: val.counter.top5_error(),
            train_images: counter.images,
            images_per_sec: counter.images as f64 / train_seconds.max(1e-9),
            data_wait_share: wait_time.as_secs_f64() / train_seconds.max(1e-9),
            train_seconds,
            val_seconds,
        };
        let decision = state.schedule.end_epoch(epoch + 1, m.val_top1_error);
        state.metrics.push(m.clone());
        state.epochs_done = epoch + 1;
        metrics_files.write(&state.metrics)?;
        draw_curves(&cfg.run_dir.join(PLOT_FILE), &state.metrics)?;
        let dir = checkpoint::save(&cfg.run_dir, &state, &varmap, &sgd.momentum_state(), &extra)?;
        last_checkpoint = Some(dir);
        if cfg.verbose {
            println!(
                "epoch {}/{}: train loss {:.4}, top-1 {:.2}%, top-5 {:.2}% | val loss {:.4}, top-1 {:.2}%, top-5 {:.2}% | lr {} | {:.1} img/s, data wait {:.1}% | {:.0}s + {:.0}s val",
                m.epoch,
                cfg.epochs,
                m.train_loss,
                m.train_top1_error,
                m.train_top5_error,
                m.val_loss,
                m.val_top1_error,
                m.val_top5_error,
                m.lr,
                m.images_per_sec,
                100.0 * m.data_wait_share,
                m.train_seconds,
                m.val_seconds
            );
            if let LrDecision::Reduced { from, to } = decision {
                let why = match state.schedule.rule {
                    crate::schedule::ScheduleRule::Plateau { .. } => {
                        "validation error stopped improving"
                    }
                    crate::schedule::ScheduleRule::Step { .. } => "step schedule",
                };
                println!("learning rate {from} -> {to} ({why})");
            }
        }
        if stop.load(Ordering::SeqCst) && state.epochs_done < cfg.epochs {
            return Ok(TrainOutcome {
                run_dir: cfg.run_dir.clone(),
                history: state.metrics.clone(),
                checkpoint: last_checkpoint,
                interrupted: true,
            });
        }
    }

    Ok(TrainOutcome {
        run_dir: cfg.run_dir.clone(),
        history: state.metrics.clone(),
        checkpoint: last_checkpoint,
        interrupted: false,
    })
}

/// A resumed run must train the same network on the same data the same way.
fn check_resume_matches(cfg: &TrainConfig, ck: &Checkpoint) -> Result<()> {
    let s = &ck.state;
    let mut diffs = Vec::new();
    if s.architecture != cfg.architecture {
        diffs.push(format!(
            "model {} ({}) vs {} ({})",
            s.architecture.name,
            s.architecture.activation,
            cfg.architecture.name,
            cfg.architecture.activation
        ));
    }
    if s.init != cfg.init.to_string() {
        diffs.push(format!("init {} vs {}", s.init, cfg.init));
    }
    if s.seed != cfg.seed {
        diffs.push(format!("seed {} vs {}", s.seed, cfg.seed));
    }
    if s.batch_size != cfg.batch_size {
        diffs.push(format!("batch size {} vs {}", s.batch_size, cfg.batch_size));
    }
    if s.momentum != cfg.momentum || s.weight_decay != cfg.weight_decay {
        diffs.push("momentum or weight decay".into());
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(TrainerError::Checkpoint {
            path: ck.dir.clone(),
            reason: format!(
                "cannot resume with different settings (checkpoint vs now): {}; \
                 use TrainConfig::resume_from to take them from the checkpoint",
                diffs.join(", ")
            ),
        })
    }
}

impl TrainConfig {
    /// Takes the settings a checkpoint fixes (network, init, seed, batch,
    /// SGD constants, schedule) from `ck` and sets `resume`; the rest
    /// (epochs, devices, threads, data, verbosity) stays as in `self`.
    pub fn resume_from(mut self, ck: &Checkpoint) -> Result<Self> {
        let s = &ck.state;
        self.architecture = s.architecture.clone();
        self.init =
            s.init
                .parse()
                .map_err(|e: model::ParseInitError| TrainerError::Checkpoint {
                    path: ck.dir.clone(),
                    reason: e.to_string(),
                })?;
        self.seed = s.seed;
        self.batch_size = s.batch_size;
        self.momentum = s.momentum;
        self.weight_decay = s.weight_decay;
        self.schedule = s.schedule.clone();
        self.resume = true;
        Ok(self)
    }
}

pub(crate) fn progress_bar(visible: bool, len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar
}
