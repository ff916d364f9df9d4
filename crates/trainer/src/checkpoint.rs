//! Checkpoints: parameters and momentum buffers as safetensors, the rest of
//! the training state as JSON, in one directory per checkpoint.
//!
//! Layout inside a run directory:
//! ```text
//! RUN/latest.json                       {"checkpoint": "checkpoints/epoch-0003-step-000000120"}
//! RUN/checkpoints/epoch-0003-step-000000120/
//!     params.safetensors                the network (names as in the model crate)
//!     momentum.safetensors              the SGD momentum buffers, same names
//!     state.json                        CheckpointState
//!     classes.tsv, stats.h5             copies: prediction needs only this directory
//! ```
//! A checkpoint is written into a temporary directory beside its final
//! place, flushed, renamed into place, and only then does `latest.json`
//! (itself replaced by rename) point at it; older checkpoints are removed
//! afterwards, keeping the newest two. A crash at any moment leaves the
//! previous checkpoint intact and pointed to.
//!
//! Reading is defensive: a `state.json` that does not parse, or whose values
//! a run could not resume from (a zero batch size, more epochs done than
//! asked for, a step count no run reaches, negative or non-finite times and
//! rates, a network too large to build), is refused with
//! [`TrainerError::CheckpointState`] naming the file and the value
//! ([`CheckpointState::check`]); a `latest.json` pointing outside the run's
//! `checkpoints/` directory is refused with [`TrainerError::LatestPointer`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::arch::Architecture;
use crate::atomic::{sync_file, sync_parent, write_atomic};
use crate::error::{io_err, Result, TrainerError};
use crate::metrics::EpochMetrics;
use crate::schedule::LrSchedule;
use crate::topk::TopKCounter;

/// Format version of `state.json`.
pub const FORMAT_VERSION: u32 = 1;
/// Parameters file inside a checkpoint directory.
pub const PARAMS_FILE: &str = "params.safetensors";
/// Momentum buffers file inside a checkpoint directory.
pub const MOMENTUM_FILE: &str = "momentum.safetensors";
/// State file inside a checkpoint directory.
pub const STATE_FILE: &str = "state.json";
/// Pointer to the newest checkpoint, in the run directory.
pub const LATEST_FILE: &str = "latest.json";
/// Checkpoints kept in a run directory.
pub const KEEP: usize = 2;
/// Directory of the checkpoints inside a run directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Most optimizer steps a checkpoint may record: 2^53 (steps are plotted as
/// `f64`, exact up to there; no run comes near it).
pub const MAX_STEP: u64 = 1 << 53;
/// Largest input side of a network read from a checkpoint.
pub const MAX_INPUT_SIZE: usize = 4096;
/// Widest layer (channels of a convolution, or fc6/fc7's width) of a network
/// read from a checkpoint.
pub const MAX_WIDTH: usize = 1 << 20;
/// Most parameters of a network read from a checkpoint: 2^32 (16 GiB as
/// `f32`; the paper's network has 61 million).
pub const MAX_PARAMETERS: u64 = 1 << 32;
/// Longest time a partial epoch may record, in seconds (about 31 years).
pub const MAX_SECONDS: f64 = 1e9;

/// A value of `state.json` that a run cannot resume from (see
/// [`CheckpointState::check`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Another format version.
    #[error("format version {found} (this build reads {FORMAT_VERSION})")]
    FormatVersion {
        /// The version found.
        found: u32,
    },
    /// A count that must be at least 1 is 0.
    #[error("{field} is 0; it must be at least 1")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// More epochs done than the run was asked for.
    #[error("epochs_done is {done}, more than the run's {epochs} epochs")]
    EpochsDone {
        /// Epochs done.
        done: usize,
        /// Epochs asked for.
        epochs: usize,
    },
    /// A step count past [`MAX_STEP`].
    #[error("{field} is {step}, more than {MAX_STEP} steps")]
    Step {
        /// The field.
        field: &'static str,
        /// Its value.
        step: u64,
    },
    /// A number outside its range (or not finite).
    #[error("{field} is {value}; it must be {range}")]
    Number {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// The values allowed, in words.
        range: &'static str,
    },
    /// A partial epoch further along than the steps taken.
    #[error("partial.batches_done is {batches_done}, more than the {step} steps taken")]
    PartialPastStep {
        /// Batches done in the partial epoch.
        batches_done: usize,
        /// Steps taken in all.
        step: u64,
    },
    /// A partial epoch at or past the end of the epoch it interrupted.
    #[error(
        "partial.batches_done is {batches_done}, but an epoch of this dataset has \
         {batches_per_epoch} batches"
    )]
    PartialPastEpoch {
        /// Batches done in the partial epoch.
        batches_done: usize,
        /// Batches of an epoch.
        batches_per_epoch: usize,
    },
    /// Top-k counts that cannot be.
    #[error(
        "partial.counter counts {top1} top-1 and {top5} top-5 hits of {images} images \
         (top-1 <= top-5 <= images)"
    )]
    Counter {
        /// Images counted.
        images: u64,
        /// Top-1 hits.
        top1: u64,
        /// Top-5 hits.
        top5: u64,
    },
    /// More learning-rate reductions made than allowed.
    #[error("schedule.reductions is {made}, more than schedule.max_reductions {max}")]
    Reductions {
        /// Reductions made.
        made: usize,
        /// Reductions allowed.
        max: usize,
    },
    /// An unknown initialisation.
    #[error("init: {0}")]
    Init(#[source] model::ParseInitError),
    /// A network the model crate cannot build.
    #[error("architecture: {0}")]
    Architecture(#[source] model::ConfigError),
    /// A layer wider than [`MAX_WIDTH`].
    #[error("architecture: {layer} is {width} wide, more than {MAX_WIDTH}")]
    Width {
        /// The layer.
        layer: &'static str,
        /// Its width.
        width: usize,
    },
    /// A network input larger than [`MAX_INPUT_SIZE`].
    #[error("architecture.input_size is {0}, more than {MAX_INPUT_SIZE}")]
    InputSize(usize),
    /// A network with more than [`MAX_PARAMETERS`] parameters.
    #[error("architecture: {0} parameters, more than {MAX_PARAMETERS}")]
    Parameters(u128),
}

/// An epoch interrupted part-way (Ctrl-C): where to pick it up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Batches of the epoch already trained on.
    pub batches_done: usize,
    /// Training loss and top-k counts of those batches.
    pub counter: TopKCounter,
    /// Training wall time spent so far in the epoch, seconds.
    pub train_seconds: f64,
    /// Time spent waiting for data so far in the epoch, seconds.
    pub wait_seconds: f64,
}

/// Everything besides tensors that a resumed run needs to continue exactly.
///
/// Randomness: the loader's shuffle and augmentation are functions of
/// `(seed, epoch, image)`, dropout masks of `(seed, epoch, step)` and the
/// initialisation of `seed`, so `seed` together with `epochs_done`, `step`
/// and `partial` is the complete random state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The network's shapes.
    pub architecture: Architecture,
    /// Number of classes (rows of `classes.tsv`).
    pub num_classes: usize,
    /// `paper` or `pytorch`.
    pub init: String,
    /// The run's seed.
    pub seed: u64,
    /// Images per batch.
    pub batch_size: usize,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Epochs the run was asked for.
    pub epochs: usize,
    /// The learning-rate schedule and its state (the current rate is `schedule.lr`).
    pub schedule: LrSchedule,
    /// Whole epochs completed.
    pub epochs_done: usize,
    /// Optimizer steps completed.
    pub step: u64,
    /// The epoch in progress, when the checkpoint was taken mid-epoch.
    pub partial: Option<PartialEpoch>,
    /// Metrics of the completed epochs.
    pub metrics: Vec<EpochMetrics>,
    /// The dataset directory trained on (`cargo xtask preprocess` output).
    pub data_dir: PathBuf,
}

/// A finite number in `lo..=hi`.
fn in_range(
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    range: &'static str,
) -> std::result::Result<(), StateError> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(StateError::Number {
            field,
            value,
            range,
        })
    }
}

/// The range of a rate, a weight or a loss sum, as an error states it.
const NON_NEGATIVE: &str = "a finite number, 0 or more";

impl CheckpointState {
    /// Checks the values a resumed run relies on: the format version, the
    /// counts that must be at least 1, epochs and steps done (at most the
    /// epochs asked for, at most [`MAX_STEP`] steps, a partial epoch no
    /// further along than the steps), finite non-negative rates and times,
    /// top-k counts that can be, the schedule's reductions, the
    /// initialisation's name, and a network the model crate can build with
    /// at most [`MAX_PARAMETERS`] parameters. [`Checkpoint::open`] refuses a
    /// state that fails.
    pub fn check(&self) -> std::result::Result<(), StateError> {
        if self.format_version != FORMAT_VERSION {
            return Err(StateError::FormatVersion {
                found: self.format_version,
            });
        }
        for (field, n) in [
            ("num_classes", self.num_classes),
            ("batch_size", self.batch_size),
            ("epochs", self.epochs),
        ] {
            if n == 0 {
                return Err(StateError::Zero { field });
            }
        }
        if self.epochs_done > self.epochs {
            return Err(StateError::EpochsDone {
                done: self.epochs_done,
                epochs: self.epochs,
            });
        }
        if self.step > MAX_STEP {
            return Err(StateError::Step {
                field: "step",
                step: self.step,
            });
        }
        self.check_optimizer()?;
        if let Some(p) = &self.partial {
            self.check_partial(p)?;
        }
        self.check_network()
    }

    /// Momentum, weight decay and the schedule's state.
    fn check_optimizer(&self) -> std::result::Result<(), StateError> {
        in_range("momentum", self.momentum, 0.0, f64::MAX, NON_NEGATIVE)?;
        in_range(
            "weight_decay",
            self.weight_decay,
            0.0,
            f64::MAX,
            NON_NEGATIVE,
        )?;
        let sch = &self.schedule;
        in_range("schedule.lr", sch.lr, 0.0, f64::MAX, NON_NEGATIVE)?;
        in_range(
            "schedule.factor",
            sch.factor,
            f64::MIN_POSITIVE,
            1.0,
            "above 0 and at most 1",
        )?;
        if let Some(best) = sch.best_error {
            in_range("schedule.best_error", best, f64::MIN, f64::MAX, "finite")?;
        }
        match sch.rule {
            crate::schedule::ScheduleRule::Plateau {
                patience,
                min_delta,
            } => {
                if patience == 0 {
                    return Err(StateError::Zero {
                        field: "schedule.rule.patience",
                    });
                }
                in_range(
                    "schedule.rule.min_delta",
                    min_delta,
                    f64::MIN,
                    f64::MAX,
                    "finite",
                )?;
            }
            crate::schedule::ScheduleRule::Step { step_epochs } => {
                if step_epochs == 0 {
                    return Err(StateError::Zero {
                        field: "schedule.rule.step_epochs",
                    });
                }
            }
        }
        if sch.reductions > sch.max_reductions {
            return Err(StateError::Reductions {
                made: sch.reductions,
                max: sch.max_reductions,
            });
        }
        Ok(())
    }

    /// The position inside an interrupted epoch.
    fn check_partial(&self, p: &PartialEpoch) -> std::result::Result<(), StateError> {
        if p.batches_done as u64 > self.step {
            return Err(StateError::PartialPastStep {
                batches_done: p.batches_done,
                step: self.step,
            });
        }
        const TIME: &str = "a finite number of seconds, 0 to 1e9";
        in_range(
            "partial.train_seconds",
            p.train_seconds,
            0.0,
            MAX_SECONDS,
            TIME,
        )?;
        in_range(
            "partial.wait_seconds",
            p.wait_seconds,
            0.0,
            MAX_SECONDS,
            TIME,
        )?;
        let c = &p.counter;
        if c.top1_correct > c.top5_correct || c.top5_correct > c.images {
            return Err(StateError::Counter {
                images: c.images,
                top1: c.top1_correct,
                top5: c.top5_correct,
            });
        }
        in_range(
            "partial.counter.loss_sum",
            c.loss_sum,
            0.0,
            f64::MAX,
            NON_NEGATIVE,
        )?;
        Ok(())
    }

    /// The initialisation's name and a network the model crate can build.
    fn check_network(&self) -> std::result::Result<(), StateError> {
        self.init.parse::<model::Init>().map_err(StateError::Init)?;
        let arch = &self.architecture;
        if arch.input_size > MAX_INPUT_SIZE {
            return Err(StateError::InputSize(arch.input_size));
        }
        let layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6/fc7"];
        let widths = arch.conv_channels.iter().chain([&arch.fc_width]);
        if let Some((layer, &width)) = layers.into_iter().zip(widths).find(|(_, &w)| w > MAX_WIDTH)
        {
            return Err(StateError::Width { layer, width });
        }
        let cfg = arch.to_config(self.num_classes);
        cfg.validate().map_err(StateError::Architecture)?;
        let parameters: u128 = model::parameter_specs(&cfg)
            .iter()
            .map(|p| p.shape.iter().map(|&d| d as u128).product::<u128>())
            .sum();
        if parameters > MAX_PARAMETERS as u128 {
            return Err(StateError::Parameters(parameters));
        }
        Ok(())
    }
}

/// A checkpoint directory and its state.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Its `state.json`.
    pub state: CheckpointState,
}

impl Checkpoint {
    /// `params.safetensors` of this checkpoint.
    pub fn params_path(&self) -> PathBuf {
        self.dir.join(PARAMS_FILE)
    }
    /// `momentum.safetensors` of this checkpoint.
    pub fn momentum_path(&self) -> PathBuf {
        self.dir.join(MOMENTUM_FILE)
    }
    /// The class table copy of this checkpoint (named as in a dataset).
    pub fn classes_path(&self) -> PathBuf {
        loader::DatasetDir::new(&self.dir).classes()
    }
    /// The statistics copy of this checkpoint (named as in a dataset).
    pub fn stats_path(&self) -> PathBuf {
        loader::DatasetDir::new(&self.dir).stats()
    }

    /// Loads the parameters into `varmap` (which must hold the network's
    /// variables, e.g. from `AlexNet::new`).
    pub fn load_params(&self, varmap: &mut VarMap) -> Result<()> {
        let p = self.params_path();
        varmap
            .load(&p)
            .map_err(|source| TrainerError::CheckpointTensors {
                path: p,
                action: "loading parameters",
                source: Box::new(source),
            })
    }

    /// Loads the momentum buffers (on the CPU; the optimizer moves them).
    pub fn load_momentum(&self) -> Result<HashMap<String, Tensor>> {
        let p = self.momentum_path();
        candle_core::safetensors::load(&p, &Device::Cpu).map_err(|source| {
            TrainerError::CheckpointTensors {
                path: p,
                action: "reading momentum buffers",
                source: Box::new(source),
            }
        })
    }

    /// Reads a checkpoint from a run directory (its newest checkpoint, which
    /// `latest.json` names inside the run's `checkpoints/`), a checkpoint
    /// directory, or a checkpoint's `state.json`; refuses a state that
    /// fails [`CheckpointState::check`].
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let dir = resolve(path)?;
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(io_err(&state_path))?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|source| TrainerError::Json {
                path: state_path.clone(),
                source,
            })?;
        if let Err(source) = state.check() {
            return Err(TrainerError::CheckpointState {
                path: state_path,
                source,
            });
        }
        for f in [PARAMS_FILE, MOMENTUM_FILE] {
            if !dir.join(f).is_file() {
                return Err(TrainerError::Checkpoint {
                    path: dir.clone(),
                    reason: format!("{f} is missing"),
                });
            }
        }
        Ok(Checkpoint { dir, state })
    }
}

#[derive(Serialize, Deserialize)]
struct Latest {
    checkpoint: PathBuf,
}

fn resolve(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.parent().unwrap_or(Path::new(".")).to_path_buf());
    }
    if path.join(STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    let latest = path.join(LATEST_FILE);
    if latest.is_file() {
        let text = std::fs::read_to_string(&latest).map_err(io_err(&latest))?;
        let l: Latest = serde_json::from_str(&text).map_err(|source| TrainerError::Json {
            path: latest.clone(),
            source,
        })?;
        return inside_run(path, &latest, &l.checkpoint);
    }
    Err(TrainerError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!(
            "not a checkpoint: expected a run directory with {LATEST_FILE}, \
             or a checkpoint directory with {STATE_FILE}"
        ),
    })
}

/// The checkpoint directory `pointer` of `latest.json` names, refused
/// unless it is `checkpoints/<name>` (no other component, no `..`, not
/// absolute): a pointer outside the run would resume another run.
fn inside_run(run_dir: &Path, latest: &Path, pointer: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let parts: Vec<Component<'_>> = pointer.components().collect();
    match parts.as_slice() {
        [Component::Normal(dir), Component::Normal(name)]
            if *dir == CHECKPOINTS_DIR && !name.to_string_lossy().starts_with(".tmp-") =>
        {
            Ok(run_dir.join(pointer))
        }
        _ => Err(TrainerError::LatestPointer {
            path: latest.to_path_buf(),
            pointer: pointer.to_path_buf(),
        }),
    }
}

/// The newest checkpoint of `run_dir`, if it has one.
pub fn latest(run_dir: &Path) -> Result<Option<Checkpoint>> {
    if !run_dir.join(LATEST_FILE).is_file() {
        return Ok(None);
    }
    Checkpoint::open(run_dir).map(Some)
}

/// Writes a checkpoint of `state` with the parameters in `params` and the
/// momentum buffers `momentum` into `run_dir`, copies `extra_files` (the
/// class table and statistics) into it, points `latest.json` at it and
/// removes all but the newest [`KEEP`] checkpoints. Returns its directory.
pub fn save(
    run_dir: &Path,
    state: &CheckpointState,
    params: &VarMap,
    momentum: &HashMap<String, Tensor>,
    extra_files: &[&Path],
) -> Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    std::fs::create_dir_all(&root).map_err(io_err(&root))?;
    let mut name = format!("epoch-{:04}-step-{:09}", state.epochs_done, state.step);
    let mut n = 2;
    while root.join(&name).exists() {
        name = format!("epoch-{:04}-step-{:09}-{n}", state.epochs_done, state.step);
        n += 1;
    }
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;

    let params_path = tmp.join(PARAMS_FILE);
    params
        .save(&params_path)
        .map_err(|source| TrainerError::CheckpointTensors {
            path: params_path.clone(),
            action: "writing parameters",
            source: Box::new(source),
        })?;
    let momentum_path = tmp.join(MOMENTUM_FILE);
    candle_core::safetensors::save(momentum, &momentum_path).map_err(|source| {
        TrainerError::CheckpointTensors {
            path: momentum_path.clone(),
            action: "writing momentum buffers",
            source: Box::new(source),
        }
    })?;
    for p in [&params_path, &momentum_path] {
        sync_file(p)?;
    }
    for src in extra_files {
        let dst = tmp.join(src.file_name().unwrap_or_default());
        if std::fs::hard_link(src, &dst).is_err() {
            std::fs::copy(src, &dst).map_err(io_err(&dst))?;
        }
    }
    let json = serde_json::to_vec_pretty(state).map_err(|source| TrainerError::Json {
        path: tmp.join(STATE_FILE),
        source,
    })?;
    write_atomic(&tmp.join(STATE_FILE), &json)?;

    let dir = root.join(&name);
    std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
    sync_parent(&dir);
    let latest = Latest {
        checkpoint: Path::new(CHECKPOINTS_DIR).join(&name),
    };
    let latest_json = serde_json::to_vec_pretty(&latest).map_err(|source| TrainerError::Json {
        path: run_dir.join(LATEST_FILE),
        source,
    })?;
    write_atomic(&run_dir.join(LATEST_FILE), &latest_json)?;
    prune(&root, &name)?;
    Ok(dir)
}

/// Removes checkpoint directories other than the newest [`KEEP`] (by
/// modification order of their names, which sort by epoch and step), and
/// leftover temporary directories. `current` is never removed.
fn prune(root: &Path, current: &str) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map_err(io_err(root))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let (tmps, mut done): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.starts_with(".tmp-"));
    for t in tmps {
        if !t.ends_with(&format!("-{}", std::process::id())) {
            let _ = std::fs::remove_dir_all(root.join(t));
        }
    }
    done.retain(|n| n != current);
    let excess = (done.len() + 1).saturating_sub(KEEP);
    for old in done.into_iter().take(excess) {
        let p = root.join(old);
        std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
    }
    Ok(())
}
