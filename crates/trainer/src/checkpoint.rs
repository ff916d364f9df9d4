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

    /// Reads a checkpoint from a run directory (its newest checkpoint), a
    /// checkpoint directory, or a checkpoint's `state.json`.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let dir = resolve(path)?;
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(io_err(&state_path))?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|source| TrainerError::Json {
                path: state_path.clone(),
                source,
            })?;
        if state.format_version != FORMAT_VERSION {
            return Err(TrainerError::Checkpoint {
                path: state_path,
                reason: format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    state.format_version
                ),
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
        return Ok(path.join(l.checkpoint));
    }
    Err(TrainerError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!(
            "not a checkpoint: expected a run directory with {LATEST_FILE}, \
             or a checkpoint directory with {STATE_FILE}"
        ),
    })
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
    let root = run_dir.join("checkpoints");
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
        checkpoint: Path::new("checkpoints").join(&name),
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
