//! What a training run is told: [`TrainConfig`] (every value concrete),
//! built once from the paper's defaults and a user's [`RunOptions`], and
//! the rules for resuming a run ([`TrainConfig::for_run`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use model::{Activation, Init, Precision};

use crate::arch::Architecture;
use crate::checkpoint::{self, Checkpoint};
use crate::devices::Devices;
use crate::error::{Result, TrainerError};
use crate::schedule::{LrSchedule, ScheduleRule};

/// The paper's batch size (global: over all ranks together).
pub const PAPER_BATCH_SIZE: usize = 128;
/// The paper's initial learning rate.
pub const PAPER_LR: f64 = 0.01;
/// The paper's momentum.
pub const PAPER_MOMENTUM: f64 = 0.9;
/// The paper's weight decay.
pub const PAPER_WEIGHT_DECAY: f64 = 0.0005;
/// Epochs the paper trained (roughly 90 cycles through the 1.2M images).
pub const PAPER_EPOCHS: usize = 90;
/// Epochs of a run when none are asked for: the paper's.
pub const DEFAULT_EPOCHS: usize = PAPER_EPOCHS;
/// The network of a run when none is named.
pub const DEFAULT_MODEL: &str = "alexnet";
/// Batches the loader builds ahead (the loader's own default).
pub use loader::DEFAULT_PREFETCH;
/// Images per batch of an evaluation.
pub const DEFAULT_EVAL_BATCH: usize = 128;
/// Plateau patience: epochs without a new best validation error before the
/// rate is divided by 10 (the paper does not give one).
pub const DEFAULT_PATIENCE: usize = 3;
/// Step schedule: epochs between reductions.
pub const DEFAULT_STEP_EPOCHS: usize = 30;
/// Reductions of the learning rate (the paper: three).
pub const PAPER_MAX_REDUCTIONS: usize = 3;
/// Longest wait of one collective call before a rank ends the job.
pub const DEFAULT_COLLECTIVE_TIMEOUT: Duration = Duration::from_secs(600);

/// Steps between two points of the per-step TensorBoard scalars
/// ([`TrainConfig::tensorboard_every`]).
pub const DEFAULT_TENSORBOARD_EVERY: u64 = 10;

/// Loader (and preprocess) threads when none are asked for: the loader's
/// own default, the cores this process may use.
pub use loader::default_threads;

/// When to write a checkpoint inside an epoch (one is always written at
/// the end of each epoch and on a stop).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum CheckpointEvery {
    /// Only at the end of each epoch: a killed job loses up to an epoch.
    #[default]
    Epoch,
    /// After every this many optimizer steps.
    Steps(u64),
    /// After the first step that ends this long after the last checkpoint.
    Time(Duration),
}

impl FromStr for CheckpointEvery {
    type Err = TrainerError;
    /// `epoch`, `N` or `Nsteps` (steps), `Nm`/`Nmin` (minutes), `Ns`/`Nh`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || TrainerError::CheckpointEvery(s.to_string());
        let t = s.trim();
        if t == "epoch" {
            return Ok(Self::Epoch);
        }
        let digits = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(digits);
        let value: f64 = number.parse().map_err(|_| bad())?;
        if value <= 0.0 || !value.is_finite() {
            return Err(bad());
        }
        let secs = match unit.trim() {
            "" | "steps" | "step" => {
                if value.fract() != 0.0 {
                    return Err(bad());
                }
                return Ok(Self::Steps(value as u64));
            }
            "s" | "sec" => value,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        Ok(Self::Time(Duration::from_secs_f64(secs)))
    }
}

impl std::fmt::Display for CheckpointEvery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Epoch => write!(f, "epoch"),
            Self::Steps(n) => write!(f, "{n} steps"),
            Self::Time(d) => write!(f, "{} min", d.as_secs_f64() / 60.0),
        }
    }
}

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
    /// Tower placement. With several ranks on a node this is the pattern
    /// of local rank 0; see [`Devices::for_local_rank`].
    pub devices: Devices,
    /// Precision of `f32` matrix products and convolutions on CUDA
    /// (`fp32`, the default, or `tf32`); set process-wide for the run.
    pub precision: Precision,
    /// Epochs to train in all (a resumed run continues up to this number).
    pub epochs: usize,
    /// Images per batch over all ranks together (paper: 128); each of `N`
    /// ranks trains on `batch_size / N` of them.
    pub batch_size: usize,
    /// SGD momentum (paper: 0.9).
    pub momentum: f64,
    /// SGD weight decay (paper: 0.0005).
    pub weight_decay: f64,
    /// Learning-rate schedule with its initial rate (paper: 0.01, plateau).
    pub schedule: LrSchedule,
    /// Seeds initialisation, data order, augmentation and dropout.
    pub seed: u64,
    /// Loader worker threads (per rank).
    pub threads: usize,
    /// Batches the loader may finish ahead of the trainer.
    pub prefetch: usize,
    /// Continue from the newest checkpoint in `run_dir`; when it has none
    /// yet, start from the beginning (and say so).
    pub resume: bool,
    /// Checkpoints inside an epoch.
    pub checkpoint_every: CheckpointEvery,
    /// Stop as on Ctrl-C once this many optimizer steps are done in all
    /// (checkpoint of the exact position, `interrupted` outcome). For
    /// time-boxed runs and tests; `None` trains all epochs.
    pub stop_at_step: Option<u64>,
    /// TensorBoard event files in `run_dir/tensorboard/` (rank 0): the
    /// per-step scalars every this many steps, and the per-epoch metrics
    /// and conv1 kernels at every epoch's end. 0 writes no event files.
    pub tensorboard_every: u64,
    /// The checkpoint [`TrainConfig::for_run`] found and checked when
    /// resuming (`Some(None)`: it looked and found none), so that the
    /// trainer neither reads nor checks it again. `None`: not looked yet.
    found: Option<Option<Box<Checkpoint>>>,
}

/// Every option of a run started (or restarted) from a command line, as
/// the user gave them; [`TrainConfig::for_run`] turns them into the run's
/// configuration.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The dataset (`cargo xtask preprocess` output). Needed for a new
    /// run; a resumed run defaults to the one its checkpoint trained on.
    pub data: Option<PathBuf>,
    /// The run directory (default `runs/<model>-<unix time>`).
    pub run_dir: Option<PathBuf>,
    /// Continue the run in `run_dir` (from the beginning when it has no
    /// checkpoint yet).
    pub resume: bool,
    /// The settings the run fixes when it starts.
    pub settings: RunSettings,
    /// Tower placement.
    pub devices: Devices,
    /// Precision of `f32` products on CUDA.
    pub precision: Precision,
    /// Epochs in all.
    pub epochs: usize,
    /// Loader threads per rank (default [`default_threads`]).
    pub threads: Option<usize>,
    /// Batches the loader may prepare ahead.
    pub prefetch: usize,
    /// Checkpoints inside an epoch.
    pub checkpoint_every: CheckpointEvery,
    /// Stop with a checkpoint after this many optimizer steps in all.
    pub stop_at_step: Option<u64>,
    /// Steps between per-step TensorBoard scalars (0: no event files).
    pub tensorboard_every: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            data: None,
            run_dir: None,
            resume: false,
            settings: RunSettings::default(),
            devices: Devices::default(),
            precision: Precision::default(),
            epochs: DEFAULT_EPOCHS,
            threads: None,
            prefetch: DEFAULT_PREFETCH,
            checkpoint_every: CheckpointEvery::default(),
            stop_at_step: None,
            tensorboard_every: DEFAULT_TENSORBOARD_EVERY,
        }
    }
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
            devices: Devices::default(),
            precision: Precision::Fp32,
            epochs: DEFAULT_EPOCHS,
            batch_size: PAPER_BATCH_SIZE,
            momentum: PAPER_MOMENTUM,
            weight_decay: PAPER_WEIGHT_DECAY,
            schedule: LrSchedule::plateau(PAPER_LR, DEFAULT_PATIENCE),
            seed: 0,
            threads: default_threads(),
            prefetch: DEFAULT_PREFETCH,
            resume: false,
            checkpoint_every: CheckpointEvery::Epoch,
            stop_at_step: None,
            tensorboard_every: DEFAULT_TENSORBOARD_EVERY,
            found: None,
        }
    }

    /// The quick start's recipe: `alexnet-small`, PyTorch's initialisation
    /// (with the paper's N(0, 0.01) weights this net stays at chance for
    /// several epochs on a small dataset), batch 64, and the rate 0.005 for
    /// one epoch, then 0.0005. Measured on the quick-start data, a constant
    /// 0.005 oscillates (val error 29% -> 37% in epochs 3-4) while this
    /// schedule reaches about 9% val top-1 error after 4 epochs
    /// ([`QUICKSTART_EPOCHS`]). The recipe's settings are fixed; the other
    /// options (dataset, run directory, devices, epochs, threads, ...) come
    /// from `opts`, whose dataset must be given.
    pub fn quickstart(opts: &RunOptions) -> Result<Self> {
        let model = "alexnet-small";
        let run_dir = opts
            .run_dir
            .clone()
            .unwrap_or_else(|| default_run_dir(model));
        let data_dir = opts
            .data
            .clone()
            .ok_or_else(|| TrainerError::NoDataDir(run_dir.clone()))?;
        let mut cfg = Self::paper(&data_dir, &run_dir, Architecture::by_name(model)?);
        cfg.init = Init::PyTorch;
        cfg.batch_size = QUICKSTART_BATCH;
        let mut schedule = LrSchedule::step(QUICKSTART_LR, 1);
        schedule.max_reductions = 1;
        cfg.schedule = schedule;
        Ok(cfg.with_options(opts))
    }

    /// The options of `opts` that are not the run's settings.
    fn with_options(mut self, opts: &RunOptions) -> Self {
        self.resume = opts.resume;
        self.devices = opts.devices.clone();
        self.precision = opts.precision;
        self.epochs = opts.epochs;
        self.threads = opts.threads.unwrap_or_else(default_threads);
        self.prefetch = opts.prefetch;
        self.checkpoint_every = opts.checkpoint_every;
        self.stop_at_step = opts.stop_at_step;
        self.tensorboard_every = opts.tensorboard_every;
        self
    }

    /// The configuration of a run started (or restarted) from a command
    /// line: the paper's defaults changed by `opts.settings` for a new run,
    /// and every other option of `opts`.
    ///
    /// With `resume` and a checkpoint in the run directory (read here,
    /// once), the run's own settings and dataset are taken from it; a
    /// setting given again must equal the run's (so that one job script
    /// serves the first start and every restart), and any that differs is
    /// refused, naming each. With `resume` and no checkpoint yet, the run
    /// starts from the beginning.
    pub fn for_run(opts: &RunOptions) -> Result<Self> {
        let settings = &opts.settings;
        let model = settings.model.as_deref().unwrap_or(DEFAULT_MODEL);
        let run_dir = opts
            .run_dir
            .clone()
            .unwrap_or_else(|| default_run_dir(model));
        let existing = if opts.resume {
            checkpoint::latest(&run_dir)?
        } else {
            None
        };
        let data_dir = match (&opts.data, &existing) {
            (Some(d), _) => d.clone(),
            (None, Some(ck)) => ck.state.data_dir.clone(),
            (None, None) => return Err(TrainerError::NoDataDir(run_dir)),
        };
        let cfg = match existing {
            Some(ck) => {
                settings.check_against(&ck, &run_dir)?;
                let mut cfg = Self::paper(&data_dir, &run_dir, ck.state.architecture.clone())
                    .resume_from(&ck)?;
                cfg.found = Some(Some(Box::new(ck)));
                cfg
            }
            None => {
                let mut cfg = settings.apply(Self::paper(
                    &data_dir,
                    &run_dir,
                    Architecture::by_name(model)?,
                ))?;
                cfg.found = opts.resume.then_some(None);
                cfg
            }
        };
        Ok(cfg.with_options(opts))
    }

    /// The run's checkpoint to resume from, when `resume` is set: the one
    /// [`TrainConfig::for_run`] read and checked, or else the newest in
    /// `run_dir`, checked against this configuration's settings. `None`:
    /// a new run, or no checkpoint yet.
    pub(crate) fn checkpoint_to_resume(&mut self) -> Result<Option<Box<Checkpoint>>> {
        if !self.resume {
            return Ok(None);
        }
        if let Some(found) = self.found.take() {
            return Ok(found);
        }
        let Some(ck) = checkpoint::latest(&self.run_dir)? else {
            return Ok(None);
        };
        RunSettings::of(self).check_against(&ck, &self.run_dir)?;
        Ok(Some(Box::new(ck)))
    }

    /// Takes the settings a checkpoint fixes (network, init, seed, batch,
    /// SGD constants, schedule) from `ck` and sets `resume`; the rest
    /// (epochs, devices, threads, data) stays as in `self`.
    pub fn resume_from(mut self, ck: &Checkpoint) -> Result<Self> {
        let s = &ck.state;
        self.architecture = s.architecture.clone();
        self.init = s
            .init
            .parse()
            .map_err(|source| TrainerError::CheckpointInit {
                path: ck.dir.clone(),
                source,
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

/// The quick start's working directory (synthetic files, shards, run).
pub const QUICKSTART_DIR: &str = "quickstart";
/// Quick-start epochs.
pub const QUICKSTART_EPOCHS: usize = 4;
/// Quick-start batch size.
pub const QUICKSTART_BATCH: usize = 64;
/// Quick-start initial learning rate (one epoch, then a tenth of it).
pub const QUICKSTART_LR: f64 = 0.005;

/// Where a run goes when no run directory is named: `runs/<model>-<unix time>`.
pub fn default_run_dir(model: &str) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from(format!("runs/{model}-{now}"))
}

/// The learning-rate rule of [`RunSettings::schedule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Divide by 10 when the validation error stops improving (the paper).
    Plateau,
    /// Divide by 10 every `step_epochs` epochs.
    Step,
}

/// The settings a run fixes when it starts, as a user gives them: `None`
/// is the paper's default for a new run and "the run's own value" on resume.
#[derive(Clone, Debug, Default)]
pub struct RunSettings {
    /// `alexnet` (default) or `alexnet-small`.
    pub model: Option<String>,
    /// The non-linearity (default ReLU).
    pub activation: Option<Activation>,
    /// Parameter initialisation (default the paper's).
    pub init: Option<Init>,
    /// Global batch (default 128).
    pub batch_size: Option<usize>,
    /// Initial learning rate (default 0.01).
    pub lr: Option<f64>,
    /// Momentum (default 0.9).
    pub momentum: Option<f64>,
    /// Weight decay (default 0.0005).
    pub weight_decay: Option<f64>,
    /// The schedule's rule (default plateau).
    pub schedule: Option<ScheduleKind>,
    /// Plateau patience (default 3).
    pub patience: Option<usize>,
    /// Step schedule's period (default 30).
    pub step_epochs: Option<usize>,
    /// Most reductions (default 3).
    pub max_reductions: Option<usize>,
    /// Seed (default 0).
    pub seed: Option<u64>,
}

impl RunSettings {
    /// The settings of `cfg` that a run resumed with it takes from it (as
    /// if given on the command line): the network, initialisation, seed,
    /// batch and SGD constants. The schedule and its state come from the
    /// checkpoint.
    fn of(cfg: &TrainConfig) -> Self {
        Self {
            model: Some(cfg.architecture.name.clone()),
            activation: Some(cfg.architecture.activation),
            init: Some(cfg.init),
            batch_size: Some(cfg.batch_size),
            momentum: Some(cfg.momentum),
            weight_decay: Some(cfg.weight_decay),
            seed: Some(cfg.seed),
            ..Self::default()
        }
    }

    /// A new run: `base` changed where a setting is given.
    fn apply(&self, mut cfg: TrainConfig) -> Result<TrainConfig> {
        if let Some(a) = self.activation {
            cfg.architecture.activation = a;
        }
        if let Some(i) = self.init {
            cfg.init = i;
        }
        cfg.batch_size = self.batch_size.unwrap_or(PAPER_BATCH_SIZE);
        cfg.momentum = self.momentum.unwrap_or(PAPER_MOMENTUM);
        cfg.weight_decay = self.weight_decay.unwrap_or(PAPER_WEIGHT_DECAY);
        cfg.seed = self.seed.unwrap_or(0);
        let lr = self.lr.unwrap_or(PAPER_LR);
        let mut schedule = match self.schedule.unwrap_or(ScheduleKind::Plateau) {
            ScheduleKind::Plateau => {
                LrSchedule::plateau(lr, self.patience.unwrap_or(DEFAULT_PATIENCE))
            }
            ScheduleKind::Step => {
                LrSchedule::step(lr, self.step_epochs.unwrap_or(DEFAULT_STEP_EPOCHS))
            }
        };
        schedule.max_reductions = self.max_reductions.unwrap_or(PAPER_MAX_REDUCTIONS);
        cfg.schedule = schedule;
        Ok(cfg)
    }

    /// Every given setting must equal the run's own.
    fn check_against(&self, ck: &Checkpoint, run_dir: &Path) -> Result<()> {
        let s = &ck.state;
        let mut conflicts = Vec::new();
        let mut differ = |flag: &str, asked: String, run: String| {
            if asked != run {
                conflicts.push(format!("{flag} {asked} (the run uses {run})"));
            }
        };
        if let Some(m) = &self.model {
            differ("--model", m.clone(), s.architecture.name.clone());
        }
        if let Some(a) = self.activation {
            differ(
                "--activation",
                a.name().into(),
                s.architecture.activation.name().into(),
            );
        }
        if let Some(i) = self.init {
            differ("--init", i.to_string(), s.init.clone());
        }
        if let Some(b) = self.batch_size {
            differ("--batch-size", b.to_string(), s.batch_size.to_string());
        }
        if let Some(v) = self.seed {
            differ("--seed", v.to_string(), s.seed.to_string());
        }
        if let Some(v) = self.momentum {
            differ("--momentum", v.to_string(), s.momentum.to_string());
        }
        if let Some(v) = self.weight_decay {
            differ("--weight-decay", v.to_string(), s.weight_decay.to_string());
        }
        let sched = &s.schedule;
        if let Some(lr) = self.lr {
            // The checkpoint holds the current rate and the reductions made.
            let initial = sched.lr / sched.factor.powi(sched.reductions as i32);
            if (lr - initial).abs() > 1e-9 * initial.abs().max(f64::MIN_POSITIVE) {
                differ("--lr", lr.to_string(), initial.to_string());
            }
        }
        if let Some(kind) = self.schedule {
            let run = match sched.rule {
                ScheduleRule::Plateau { .. } => ScheduleKind::Plateau,
                ScheduleRule::Step { .. } => ScheduleKind::Step,
            };
            differ(
                "--schedule",
                format!("{kind:?}").to_lowercase(),
                format!("{run:?}").to_lowercase(),
            );
        }
        match sched.rule {
            ScheduleRule::Plateau { patience, .. } => {
                if let Some(p) = self.patience {
                    differ("--patience", p.to_string(), patience.to_string());
                }
            }
            ScheduleRule::Step { step_epochs } => {
                if let Some(p) = self.step_epochs {
                    differ("--step-epochs", p.to_string(), step_epochs.to_string());
                }
            }
        }
        if let Some(m) = self.max_reductions {
            differ(
                "--max-reductions",
                m.to_string(),
                sched.max_reductions.to_string(),
            );
        }
        if conflicts.is_empty() {
            Ok(())
        } else {
            Err(TrainerError::ResumeConflict {
                run_dir: run_dir.to_path_buf(),
                conflicts,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_every_parses_steps_and_durations() {
        let p = |s: &str| s.parse::<CheckpointEvery>();
        assert_eq!(p("epoch").unwrap(), CheckpointEvery::Epoch);
        assert_eq!(p("500").unwrap(), CheckpointEvery::Steps(500));
        assert_eq!(p("20steps").unwrap(), CheckpointEvery::Steps(20));
        assert_eq!(
            p("30m").unwrap(),
            CheckpointEvery::Time(Duration::from_secs(1800))
        );
        assert_eq!(
            p("1.5min").unwrap(),
            CheckpointEvery::Time(Duration::from_secs(90))
        );
        assert_eq!(
            p("2h").unwrap(),
            CheckpointEvery::Time(Duration::from_secs(7200))
        );
        assert_eq!(
            p("45s").unwrap(),
            CheckpointEvery::Time(Duration::from_secs(45))
        );
        for bad in ["", "0", "-3", "1.5", "5 parsecs", "m"] {
            assert!(
                matches!(p(bad), Err(TrainerError::CheckpointEvery(ref s)) if s == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn new_run_takes_paper_defaults_and_given_settings() {
        let d = Path::new("data");
        let r = Path::new("run-does-not-exist");
        let opts = |settings: &RunSettings, resume: bool| RunOptions {
            data: Some(d.to_path_buf()),
            run_dir: Some(r.to_path_buf()),
            resume,
            settings: settings.clone(),
            ..RunOptions::default()
        };
        let cfg = TrainConfig::for_run(&opts(&RunSettings::default(), false)).unwrap();
        assert_eq!(cfg.batch_size, 128);
        assert_eq!(cfg.schedule, LrSchedule::plateau(0.01, 3));
        assert_eq!(cfg.architecture.name, "alexnet");
        let s = RunSettings {
            model: Some("alexnet-small".into()),
            lr: Some(0.02),
            schedule: Some(ScheduleKind::Step),
            step_epochs: Some(7),
            max_reductions: Some(1),
            batch_size: Some(64),
            ..RunSettings::default()
        };
        let cfg = TrainConfig::for_run(&opts(&s, true)).unwrap();
        assert!(cfg.resume);
        assert_eq!(cfg.architecture.name, "alexnet-small");
        assert_eq!(cfg.batch_size, 64);
        let mut want = LrSchedule::step(0.02, 7);
        want.max_reductions = 1;
        assert_eq!(cfg.schedule, want);
        assert!(TrainConfig::for_run(&RunOptions {
            run_dir: None,
            ..opts(&s, false)
        })
        .unwrap()
        .run_dir
        .to_string_lossy()
        .starts_with("runs/alexnet-small-"));
    }
}
