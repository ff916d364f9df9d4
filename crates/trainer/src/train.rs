//! The training loop: [`Trainer`] feeds loader batches into the network,
//! sums gradients over the ranks of a job, applies the paper's SGD,
//! validates each epoch, writes metrics, the plot and checkpoints, and
//! resumes from the exact position.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use candle_nn::VarMap;
use loader::{Batch, Dataset, Loader, LoaderConfig, Stats};
use model::{AlexNet, ForwardMode, PaperSgd, Placement};

use crate::checkpoint::{self, Checkpoint, CheckpointState, PartialEpoch, FORMAT_VERSION};
use crate::config::{CheckpointEvery, TrainConfig};
use crate::device_input::{train_output, Feed, InputPath};
use crate::devices::Devices;
use crate::distributed::{
    BatchShare, Collective, GradientReducer, SingleProcess, DEFAULT_BUCKET_BYTES,
};
use crate::error::{io_err, Result, TrainerError};
use crate::evaluate::{evaluate, EvalOptions};
use crate::events::{CheckpointReason, NoEvents, RunSummary, StepReport, TrainEvent, TrainSink};
use crate::figures::filters::{conv1_kernels_of, render_filters, FiltersOptions};
use crate::metrics::{EpochMetrics, MetricsFiles};
use crate::plot::draw_curves;
use crate::schedule::{LrDecision, ScheduleRule};
use crate::tensorboard::RunEvents;
use crate::topk::TopKCounter;

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

/// Trains as `cfg` says in this process alone, reporting nothing (see
/// [`Trainer::run`]).
pub fn train(cfg: &TrainConfig, stop: &AtomicBool) -> Result<TrainOutcome> {
    Trainer::new(cfg.clone(), &SingleProcess)?.run(stop, &NoEvents)
}

/// How the run began.
enum Start {
    New,
    /// `resume` asked, no checkpoint yet.
    Fresh,
    Resumed(Box<Checkpoint>),
}

/// What [`Trainer::train_epoch`] ended with.
pub enum EpochEnd {
    /// Every batch was trained on: the epoch's training counts (all ranks).
    Trained {
        /// Loss and top-k counts of the epoch's batches.
        counter: TopKCounter,
        /// Training wall time of the epoch (this rank), seconds.
        train_seconds: f64,
        /// Time spent waiting for data (this rank), seconds.
        wait_seconds: f64,
        /// Time spent in the gradient all-reduce (this rank), seconds.
        allreduce_seconds: f64,
    },
    /// A stop was requested: the exact position is checkpointed.
    Stopped,
}

/// Figures of one step (all ranks).
struct StepResult {
    loss: f64,
    /// Top-1 error of the global batch, percent.
    top1_error: f64,
    stop: bool,
    allreduce: Duration,
}

/// One training run on one rank of a job (a job of one rank is a plain
/// process): the network, its optimizer, the loaders and the run's state.
///
/// [`Trainer::run`] trains every epoch; [`Trainer::train_epoch`] (one
/// optimizer step at a time), [`Trainer::validate`] and
/// [`Trainer::checkpoint`] are its parts. All ranks call the same methods in the same order; only
/// rank 0 writes files.
pub struct Trainer<'c> {
    cfg: TrainConfig,
    collective: &'c dyn Collective,
    share: BatchShare,
    varmap: VarMap,
    net: AlexNet,
    sgd: PaperSgd,
    reducer: GradientReducer,
    train_loader: Loader,
    val_loader: Loader,
    /// Validation images this rank counts (the loader pads ranks).
    val_images_mine: usize,
    state: CheckpointState,
    metrics_files: MetricsFiles,
    /// Files copied into each checkpoint.
    extra: [PathBuf; 2],
    last_checkpoint: Option<PathBuf>,
    /// Step and time of the last checkpoint (for `checkpoint_every`).
    last_saved: (u64, Instant),
    start: Start,
    /// Where batches become the network's input (tower A's device).
    input: InputPath,
    summary: RunSummary,
    /// TensorBoard's event files (rank 0, unless turned off).
    events: Option<RunEvents>,
}

impl<'c> Trainer<'c> {
    /// Opens the data, builds the network and optimizer, and, with
    /// `cfg.resume`, loads the run's newest checkpoint (none yet: a fresh
    /// start). Refuses a run directory holding a run unless resuming.
    /// Creates the run directory (rank 0) only once all of that succeeded.
    pub fn new(mut cfg: TrainConfig, collective: &'c dyn Collective) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.epochs == 0 {
            return Err(TrainerError::Zero {
                what: "--batch-size and --epochs",
            });
        }
        let share = BatchShare::new(cfg.batch_size, collective.rank(), collective.world_size())?;
        let start = find_start(&mut cfg)?;
        let devices = cfg.devices.for_local_rank(collective.local_rank());
        let data = RunData::open(&cfg, &share, &devices)?;
        let placement = devices.placement()?;
        model::set_precision(cfg.precision);
        let mut parts = NetworkParts::build(&cfg, &placement, data.num_classes, &share)?;
        let state = initial_state(&cfg, &start, &mut parts, data.num_classes)?;
        if state.num_classes != data.num_classes {
            return Err(TrainerError::Checkpoint {
                path: cfg.run_dir.clone(),
                reason: format!(
                    "trained on {} classes, but {} has {}",
                    state.num_classes,
                    data.classes_src.display(),
                    data.num_classes
                ),
            });
        }
        if let (Start::Resumed(ck), Some(p)) = (&start, &state.partial) {
            // A position at or past the epoch's end would skip it untrained.
            let batches_per_epoch = data.train_loader.batches_per_epoch();
            if p.batches_done >= batches_per_epoch {
                return Err(TrainerError::CheckpointState {
                    path: ck.dir.join(checkpoint::STATE_FILE),
                    source: checkpoint::StateError::PartialPastEpoch {
                        batches_done: p.batches_done,
                        batches_per_epoch,
                    },
                });
            }
        }
        let events = if collective.rank() == 0 {
            std::fs::create_dir_all(&cfg.run_dir).map_err(io_err(&cfg.run_dir))?;
            RunEvents::open(&cfg.run_dir, state.step, cfg.tensorboard_every)?
        } else {
            None
        };
        let summary = RunSummary {
            model: cfg.architecture.name.clone(),
            parameters: parts.net.num_parameters(),
            classes: data.num_classes,
            init: state.init.clone(),
            activation: cfg.architecture.activation.to_string(),
            devices: devices.to_string(),
            precision: cfg.precision.to_string(),
            train_images: data.train_images,
            val_images: data.val_images,
            batch_size: cfg.batch_size,
            batches_per_epoch: data.train_loader.batches_per_epoch(),
            world_size: share.world_size,
            transport: collective.transport(),
            allreduce_bytes: if share.world_size > 1 {
                parts.reducer.bytes_per_step()
            } else {
                0
            },
            allreduce_buckets: if share.world_size > 1 {
                parts.reducer.bucket_count()
            } else {
                0
            },
            data_warnings: data.warnings,
        };
        let last_checkpoint = match &start {
            Start::Resumed(ck) => Some(ck.dir.clone()),
            _ => None,
        };
        Ok(Self {
            metrics_files: MetricsFiles::new(&cfg.run_dir),
            extra: [data.classes_src, data.stats_src],
            input: InputPath::new(
                &placement.tower_a,
                data.train_loader.config(),
                data.train_loader.stats(),
            )?,
            val_images_mine: share.eval_images(data.val_images),
            last_saved: (state.step, Instant::now()),
            cfg,
            collective,
            share,
            varmap: parts.varmap,
            net: parts.net,
            sgd: parts.sgd,
            reducer: parts.reducer,
            train_loader: data.train_loader,
            val_loader: data.val_loader,
            state,
            last_checkpoint,
            start,
            summary,
            events,
        })
    }

    /// Set-up facts (also the first event of [`Trainer::run`]).
    pub fn summary(&self) -> &RunSummary {
        &self.summary
    }

    /// The run's state: epochs and steps done, schedule, metrics.
    pub fn state(&self) -> &CheckpointState {
        &self.state
    }

    /// The network being trained.
    pub fn network(&self) -> &AlexNet {
        &self.net
    }

    /// The network's variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn writes_files(&self) -> bool {
        self.collective.rank() == 0
    }

    /// Trains until `cfg.epochs` epochs are done, or `stop` is set (checked
    /// between batches and agreed by all ranks: the exact position is
    /// checkpointed and the run returns with `interrupted`), or the loss
    /// diverges (an error naming the step; the last good checkpoint stays).
    pub fn run(&mut self, stop: &AtomicBool, sink: &dyn TrainSink) -> Result<TrainOutcome> {
        sink.event(&TrainEvent::Started(&self.summary));
        match &self.start {
            Start::New => {}
            Start::Fresh => sink.event(&TrainEvent::FreshStart {
                run_dir: &self.cfg.run_dir,
            }),
            Start::Resumed(ck) => sink.event(&TrainEvent::Resumed {
                checkpoint: &ck.dir,
                epochs_done: ck.state.epochs_done,
                step: ck.state.step,
                batches_into_epoch: ck.state.partial.as_ref().map_or(0, |p| p.batches_done),
            }),
        }
        if self.writes_files() {
            self.metrics_files.write(&self.state.metrics)?;
            if !self.state.metrics.is_empty() {
                draw_curves(&self.cfg.run_dir.join(PLOT_FILE), &self.state.metrics)?;
            }
        }
        while self.state.epochs_done < self.cfg.epochs {
            let trained = match self.train_epoch(stop, sink)? {
                EpochEnd::Stopped => return Ok(self.outcome(true)),
                t => t,
            };
            let stop_now = self.finish_epoch(trained, stop, sink)?;
            if stop_now && self.state.epochs_done < self.cfg.epochs {
                return Ok(self.outcome(true));
            }
        }
        Ok(self.outcome(false))
    }

    fn outcome(&self, interrupted: bool) -> TrainOutcome {
        TrainOutcome {
            run_dir: self.cfg.run_dir.clone(),
            history: self.state.metrics.clone(),
            checkpoint: self.last_checkpoint.clone(),
            interrupted,
        }
    }

    /// Trains the epoch in progress to its end (or to a stop), from where
    /// it stands (a resumed epoch skips the batches already done).
    pub fn train_epoch(&mut self, stop: &AtomicBool, sink: &dyn TrainSink) -> Result<EpochEnd> {
        let epoch = self.state.epochs_done; // 0-based index of the epoch being trained
        self.sgd.set_lr(self.state.schedule.lr());
        let partial = self.state.partial.take();
        let skip = partial.as_ref().map_or(0, |p| p.batches_done);
        let mut counter = partial
            .as_ref()
            .map_or(TopKCounter::default(), |p| p.counter);
        let mut train_time =
            Duration::from_secs_f64(partial.as_ref().map_or(0.0, |p| p.train_seconds));
        let mut wait_time =
            Duration::from_secs_f64(partial.as_ref().map_or(0.0, |p| p.wait_seconds));
        let mut allreduce_time = Duration::ZERO;
        let batches_per_epoch = self.train_loader.batches_per_epoch();
        sink.event(&TrainEvent::EpochStarted {
            epoch: epoch + 1,
            epochs: self.cfg.epochs,
            batches: batches_per_epoch,
            done: skip,
        });

        let mut batches = Feed::new(self.train_loader.epoch(epoch as u64)?);
        self.input.reset();
        let mut b = 0usize;
        let mut agreed_stop = false;
        let mut last = Instant::now();
        loop {
            let fetched = batches.next_batch();
            let waited = last.elapsed();
            let Some(batch) = fetched else { break };
            let batch = batch?;
            if b < skip {
                b += 1;
                last = Instant::now();
                continue;
            }
            // One process sees its flag at once; ranks act on the flag
            // they agreed on with the previous step.
            let stop_asked = if self.share.world_size == 1 {
                stop.load(Ordering::SeqCst)
            } else {
                agreed_stop
            };
            if stop_asked || self.cfg.stop_at_step.is_some_and(|s| self.state.step >= s) {
                drop(batch);
                drop(batches);
                return self.stop_here(partial_epoch(b, counter, train_time, wait_time), sink);
            }
            wait_time += waited;
            let step_start = Instant::now();
            let result = self.step(&batch, &mut batches, epoch, b, &mut counter, stop)?;
            drop(batch);
            // The wait for the next batch, fetched ahead during the step.
            wait_time += batches.take_prefetch_wait();
            agreed_stop = result.stop;
            allreduce_time += result.allreduce;
            train_time += waited + step_start.elapsed();
            b += 1;

            let secs = train_time.as_secs_f64().max(1e-9);
            self.report_step(
                &StepReport {
                    epoch: epoch + 1,
                    batch: b,
                    step: self.state.step,
                    loss: result.loss,
                    top1_error: result.top1_error,
                    lr: self.sgd.lr(),
                    mean_loss: counter.mean_loss(),
                    images_per_sec: counter.images as f64 / secs,
                    data_wait_share: wait_time.as_secs_f64() / secs,
                    allreduce_seconds: result.allreduce.as_secs_f64(),
                },
                sink,
            )?;
            if b < batches_per_epoch && self.periodic_checkpoint_due() {
                self.state.partial = Some(partial_epoch(b, counter, train_time, wait_time));
                self.checkpoint(CheckpointReason::Periodic, sink)?;
                self.state.partial = None;
            }
            last = Instant::now();
        }
        drop(batches);
        if b != batches_per_epoch {
            return Err(TrainerError::EpochEndedEarly {
                epoch: epoch + 1,
                batches: b,
                expected: batches_per_epoch,
            });
        }
        Ok(EpochEnd::Trained {
            counter,
            train_seconds: train_time.as_secs_f64(),
            wait_seconds: wait_time.as_secs_f64(),
            allreduce_seconds: allreduce_time.as_secs_f64(),
        })
    }

    /// Stops the epoch in progress at `position`, checkpointed.
    fn stop_here(&mut self, position: PartialEpoch, sink: &dyn TrainSink) -> Result<EpochEnd> {
        self.state.partial = Some(position);
        // A checkpoint of this very step (periodic, or the resumed one)
        // already holds this position.
        if self.last_saved.0 != self.state.step || self.last_checkpoint.is_none() {
            self.checkpoint(CheckpointReason::Stop, sink)?;
        }
        Ok(EpochEnd::Stopped)
    }

    /// A step done: to the event files, then to the sink.
    fn report_step(&mut self, report: &StepReport, sink: &dyn TrainSink) -> Result<()> {
        if let Some(events) = &mut self.events {
            events.step(report)?;
        }
        sink.event(&TrainEvent::Step(report));
        Ok(())
    }

    fn periodic_checkpoint_due(&self) -> bool {
        match self.cfg.checkpoint_every {
            CheckpointEvery::Epoch => false,
            CheckpointEvery::Steps(n) => self.state.step >= self.last_saved.0.saturating_add(n),
            // Only rank 0 writes, so only its clock matters.
            CheckpointEvery::Time(d) => self.last_saved.1.elapsed() >= d,
        }
    }

    /// One optimizer step on this rank's share of global batch `b` of the
    /// 0-based `epoch`: forward, backward, gradients summed over ranks,
    /// SGD. Adds the global batch's loss and top-k counts to `counter`.
    fn step(
        &mut self,
        batch: &Batch,
        feed: &mut Feed,
        epoch: usize,
        b: usize,
        counter: &mut TopKCounter,
        stop: &AtomicBool,
    ) -> Result<StepResult> {
        let num_classes = self.state.num_classes;
        let (images, labels) = self.input.tensors(batch)?;
        let n = batch.len();
        let logits = self.net.forward(
            &images,
            ForwardMode::Train {
                dropout_seed: dropout_seed(self.state.seed, epoch, self.state.step),
            },
        )?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
        // Backward, the sum over ranks and the update are queued before the
        // loss is read back, so that on a GPU the host does not wait for
        // the forward pass in the middle of the step (a diverged step's
        // update never reaches a checkpoint: the run stops below).
        let mut grads = loss.backward()?;
        self.reducer.reduce(&mut grads, self.collective)?;
        let allreduce = self.reducer.last_duration();
        self.sgd.step(&grads)?;
        // The next batch's copy runs while the GPU computes this step.
        self.input.prefetch(feed)?;
        let local_loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let scores = logits
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let labels_cpu = labels.to_device(&Device::Cpu)?.to_vec1::<i64>()?;
        let mut local = TopKCounter::default();
        local.add_scores(&scores, num_classes, &labels_cpu)?;
        local.add_loss(local_loss as f64, n);
        let (global, stop_agreed) = self.sum_counter(&local, stop.load(Ordering::SeqCst))?;
        let loss_value = global.mean_loss();
        if !loss_value.is_finite() {
            return Err(TrainerError::Diverged {
                loss: loss_value as f32,
                step: self.state.step,
                epoch: epoch + 1,
                batch: b,
                last_checkpoint: self.last_checkpoint.clone(),
            });
        }
        drop(grads);
        counter.add(&global);
        self.state.step += 1;
        Ok(StepResult {
            loss: loss_value,
            top1_error: global.top1_error(),
            stop: stop_agreed,
            allreduce,
        })
    }

    /// Sums a counter and a stop flag over the ranks.
    fn sum_counter(&self, c: &TopKCounter, stop: bool) -> Result<(TopKCounter, bool)> {
        if self.share.world_size == 1 {
            return Ok((*c, stop));
        }
        let mut v = [
            c.images as f64,
            c.top1_correct as f64,
            c.top5_correct as f64,
            c.loss_sum,
            stop as u8 as f64,
        ];
        self.collective.all_reduce_sum_f64(&mut v)?;
        Ok((
            TopKCounter {
                images: v[0] as u64,
                top1_correct: v[1] as u64,
                top5_correct: v[2] as u64,
                loss_sum: v[3],
            },
            v[4] > 0.0,
        ))
    }

    /// Validation on the centre crop, split over the ranks and summed.
    /// Returns the counts and whether any rank's stop flag is set.
    pub fn validate(
        &self,
        epoch: usize,
        stop: &AtomicBool,
        sink: &dyn TrainSink,
    ) -> Result<(TopKCounter, bool)> {
        sink.event(&TrainEvent::ValidationStarted {
            epoch,
            batches: self.val_loader.batches_per_epoch(),
        });
        let mine = evaluate(
            &self.net,
            &self.val_loader,
            &EvalOptions {
                max_images: Some(self.val_images_mine),
                pass: "validation",
            },
            sink,
        )?;
        self.sum_counter(&mine.counter, stop.load(Ordering::SeqCst))
    }

    /// Validates the epoch just trained, records its metrics, steps the
    /// schedule and checkpoints. Returns whether a stop was asked.
    fn finish_epoch(
        &mut self,
        trained: EpochEnd,
        stop: &AtomicBool,
        sink: &dyn TrainSink,
    ) -> Result<bool> {
        let EpochEnd::Trained {
            counter,
            train_seconds,
            wait_seconds,
            allreduce_seconds,
        } = trained
        else {
            return Ok(true);
        };
        let epoch = self.state.epochs_done + 1;
        let lr = self.state.schedule.lr();
        let val_start = Instant::now();
        let (val, stop_now) = self.validate(epoch, stop, sink)?;
        let val_seconds = val_start.elapsed().as_secs_f64();
        let m = EpochMetrics {
            epoch,
            step: self.state.step,
            lr,
            train_loss: counter.mean_loss(),
            train_top1_error: counter.top1_error(),
            train_top5_error: counter.top5_error(),
            val_loss: val.mean_loss(),
            val_top1_error: val.top1_error(),
            val_top5_error: val.top5_error(),
            train_images: counter.images,
            images_per_sec: counter.images as f64 / train_seconds.max(1e-9),
            data_wait_share: wait_seconds / train_seconds.max(1e-9),
            train_seconds,
            val_seconds,
        };
        let decision = self.state.schedule.end_epoch(epoch, m.val_top1_error);
        self.state.metrics.push(m.clone());
        self.state.epochs_done = epoch;
        if self.writes_files() {
            self.metrics_files.write(&self.state.metrics)?;
            draw_curves(&self.cfg.run_dir.join(PLOT_FILE), &self.state.metrics)?;
        }
        if let Some(events) = &mut self.events {
            let (towers, kernels, side) =
                conv1_kernels_of(&self.varmap, self.cfg.architecture.single_tower)?;
            let (filters, _) = render_filters(&towers, kernels, side, &FiltersOptions::default())?;
            events.epoch(&m, &filters)?;
        }
        sink.event(&TrainEvent::EpochFinished {
            metrics: &m,
            epochs: self.cfg.epochs,
            allreduce_share: allreduce_seconds / train_seconds.max(1e-9),
            decision,
            reason: match (decision, &self.state.schedule.rule) {
                (LrDecision::Keep, _) => None,
                (_, ScheduleRule::Plateau { .. }) => Some("validation error stopped improving"),
                (_, ScheduleRule::Step { .. }) => Some("step schedule"),
            },
        });
        self.checkpoint(CheckpointReason::EpochEnd, sink)?;
        Ok(stop_now)
    }

    /// Writes a checkpoint of the current state (rank 0; the others only
    /// note the step). Returns its directory on rank 0.
    pub fn checkpoint(
        &mut self,
        why: CheckpointReason,
        sink: &dyn TrainSink,
    ) -> Result<Option<PathBuf>> {
        self.last_saved = (self.state.step, Instant::now());
        if !self.writes_files() {
            return Ok(None);
        }
        if let Some(events) = &mut self.events {
            events.flush()?;
        }
        let extra: [&Path; 2] = [&self.extra[0], &self.extra[1]];
        let dir = checkpoint::save(
            &self.cfg.run_dir,
            &self.state,
            &self.varmap,
            &self.sgd.momentum_state(),
            &extra,
        )?;
        sink.event(&TrainEvent::Checkpointed { dir: &dir, why });
        self.last_checkpoint = Some(dir.clone());
        Ok(Some(dir))
    }
}

/// The position of an epoch interrupted after `batches_done` batches.
fn partial_epoch(
    batches_done: usize,
    counter: TopKCounter,
    train: Duration,
    wait: Duration,
) -> PartialEpoch {
    PartialEpoch {
        batches_done,
        counter,
        train_seconds: train.as_secs_f64(),
        wait_seconds: wait.as_secs_f64(),
    }
}

/// How the run begins: a new run (refused where one exists), a fresh
/// start of a resumed one, or the checkpoint to resume from.
fn find_start(cfg: &mut TrainConfig) -> Result<Start> {
    match cfg.checkpoint_to_resume()? {
        Some(ck) => Ok(Start::Resumed(ck)),
        None if cfg.resume => Ok(Start::Fresh),
        None => match checkpoint::latest(&cfg.run_dir)? {
            Some(_) => Err(TrainerError::RunExists(cfg.run_dir.clone())),
            None => Ok(Start::New),
        },
    }
}

/// The dataset of a run, opened: the loaders of this rank and what the
/// summary and the checkpoints need.
struct RunData {
    num_classes: usize,
    classes_src: PathBuf,
    stats_src: PathBuf,
    train_images: usize,
    val_images: usize,
    warnings: Vec<String>,
    train_loader: Loader,
    val_loader: Loader,
}

impl RunData {
    fn open(cfg: &TrainConfig, share: &BatchShare, devices: &Devices) -> Result<Self> {
        let data = loader::DatasetDir::new(&cfg.data_dir);
        let classes_src = data.classes();
        let stats_src = data.stats();
        let num_classes = loader::read_classes(&classes_src)?.len();
        let stats = Stats::open(&stats_src)?;
        let train_ds = Dataset::open(&data.train())?;
        let val_ds = Dataset::open(&data.val())?;
        let warnings: Vec<String> = [&train_ds, &val_ds]
            .into_iter()
            .filter_map(Dataset::slow_read_warning)
            .collect();
        let (train_images, val_images) = (train_ds.len(), val_ds.len());
        let shared = |base: LoaderConfig| LoaderConfig {
            batch_size: share.local_batch(),
            threads: cfg.threads.max(1),
            prefetch: cfg.prefetch,
            crop: cfg.architecture.input_size,
            rank: share.rank,
            world_size: share.world_size,
            ..base
        };
        let train_loader = Loader::new(
            train_ds,
            stats.clone(),
            shared(LoaderConfig {
                seed: cfg.seed,
                output: train_output(devices, &LoaderConfig::train()),
                ..LoaderConfig::train()
            }),
        )?;
        let val_loader = Loader::new(val_ds, stats, shared(LoaderConfig::eval()))?;
        Ok(Self {
            num_classes,
            classes_src,
            stats_src,
            train_images,
            val_images,
            warnings,
            train_loader,
            val_loader,
        })
    }
}

/// The network on its placement, its optimizer and the gradient reducer.
struct NetworkParts {
    varmap: VarMap,
    net: AlexNet,
    sgd: PaperSgd,
    reducer: GradientReducer,
}

impl NetworkParts {
    fn build(
        cfg: &TrainConfig,
        placement: &Placement,
        num_classes: usize,
        share: &BatchShare,
    ) -> Result<Self> {
        let model_cfg = cfg.architecture.to_config(num_classes);
        let varmap = VarMap::new();
        let net = AlexNet::new(&varmap, &model_cfg, placement, cfg.init, cfg.seed)?
            .with_batch_rows(share.rows());
        let sgd = PaperSgd::new(&varmap, cfg.schedule.lr(), cfg.momentum, cfg.weight_decay)?;
        let mut named: Vec<(String, candle_core::Var)> = varmap
            .data()
            .lock()
            .expect("VarMap lock poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let reducer = GradientReducer::new(&named, DEFAULT_BUCKET_BYTES);
        Ok(Self {
            varmap,
            net,
            sgd,
            reducer,
        })
    }
}

/// The run's state at its start: a resumed checkpoint's (parameters and
/// momentum loaded into `parts`), or a new run's.
fn initial_state(
    cfg: &TrainConfig,
    start: &Start,
    parts: &mut NetworkParts,
    num_classes: usize,
) -> Result<CheckpointState> {
    Ok(match start {
        Start::Resumed(ck) => {
            ck.load_params(&mut parts.varmap)?;
            parts
                .sgd
                .load_momentum_state(&ck.load_momentum()?)
                .map_err(|source| TrainerError::CheckpointTensors {
                    path: ck.momentum_path(),
                    action: "loading momentum buffers",
                    source: Box::new(source),
                })?;
            let mut s = ck.state.clone();
            s.epochs = cfg.epochs;
            s
        }
        Start::New | Start::Fresh => CheckpointState {
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
    })
}
