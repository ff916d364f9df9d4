//! Evaluation: top-1/top-5 error over a loader's epoch (centre crop or the
//! paper's 10 views), and loading a network from a checkpoint.

use std::path::PathBuf;

use candle_core::Device;
use candle_nn::VarMap;
use loader::{Dataset, Loader, LoaderConfig, Mode, Stats};
use model::{AlexNet, ForwardMode};

use crate::checkpoint::Checkpoint;
use crate::devices::Devices;
use crate::error::Result;
use crate::events::{TrainEvent, TrainSink};
use crate::per_class::PerClass;
use crate::topk::TopKCounter;
use crate::views::average_view_probabilities;

/// Options of [`evaluate`].
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Count only the first this many images the loader delivers (a rank
    /// of a data-parallel job: the loader pads the ranks' shares by
    /// wrapping around, and padded images must not count twice). `None`:
    /// all.
    pub max_images: Option<usize>,
    /// The pass's name in its [`TrainEvent::EvalBatch`] events.
    pub pass: &'static str,
}

impl Default for EvalOptions {
    /// All images, pass `evaluation`.
    fn default() -> Self {
        Self {
            max_images: None,
            pass: "evaluation",
        }
    }
}

/// What [`evaluate`] counted.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalResult {
    /// Loss and top-k counts over the images (not views).
    pub counter: TopKCounter,
    /// Views per image that were averaged (1 or 10).
    pub views: usize,
    /// The same top-k counts per class.
    pub per_class: PerClass,
}

/// Runs `net` in evaluation mode over epoch 0 of `loader` and counts top-1
/// and top-5 hits per image. With a 10-crop loader, each image's class
/// probabilities are the softmax averaged over its 10 views (the paper's
/// test), and the loss is the cross-entropy of those averaged
/// probabilities; with one view, the plain cross-entropy of the logits.
/// `on_batch` is told the number of batches done after each.
pub fn evaluate(
    net: &AlexNet,
    loader: &Loader,
    opts: &EvalOptions,
    sink: &dyn TrainSink,
) -> Result<EvalResult> {
    let total = loader.batches_per_epoch();
    let on_batch = |done| {
        sink.event(&TrainEvent::EvalBatch {
            pass: opts.pass,
            done,
            total,
        })
    };
    let views = loader.config().mode.views();
    let num_classes = net.config().num_classes;
    let device = net.output_device().clone();
    let mut left = opts.max_images.unwrap_or(usize::MAX);
    let mut done = 0;
    let mut counter = TopKCounter::default();
    let mut per_class = PerClass::new(num_classes);
    for batch in loader.epoch(0)? {
        let batch = batch?;
        let (mut images, mut labels) = batch.to_tensors(&device)?;
        let mut n = batch.len();
        drop(batch);
        if n > left {
            // Padding at the end of this rank's share: not counted.
            images = images.narrow(0, 0, left * views)?;
            labels = labels.narrow(0, 0, left)?;
            n = left;
        }
        done += 1;
        if n == 0 {
            on_batch(done);
            continue;
        }
        left -= n;
        let logits = net.forward(&images, ForwardMode::Eval)?;
        let labels_cpu = labels.to_device(&Device::Cpu)?.to_vec1::<i64>()?;
        let (scores, loss) = if views == 1 {
            let loss = candle_nn::loss::cross_entropy(&logits, &labels)?.to_scalar::<f32>()?;
            (logits, loss as f64)
        } else {
            let probs = average_view_probabilities(&logits, views)?;
            let p = probs.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
            let nll: f64 = p
                .iter()
                .zip(&labels_cpu)
                .map(|(row, &l)| -(row[l as usize].max(1e-12) as f64).ln())
                .sum::<f64>()
                / n as f64;
            (probs, nll)
        };
        let scores = scores
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        counter.add_scores(&scores, num_classes, &labels_cpu)?;
        per_class.add_scores(&scores, &labels_cpu)?;
        counter.add_loss(loss, n);
        on_batch(done);
    }
    Ok(EvalResult {
        counter,
        views,
        per_class,
    })
}

/// Rebuilds the network of `ck` on `devices` and loads its parameters.
pub fn load_network(ck: &Checkpoint, devices: &Devices) -> Result<AlexNet> {
    let placement = devices.placement()?;
    let cfg = ck.state.architecture.to_config(ck.state.num_classes);
    let mut varmap = VarMap::new();
    let init = ck.state.init.parse().unwrap_or_default();
    let net = AlexNet::new(&varmap, &cfg, &placement, init, ck.state.seed)?;
    ck.load_params(&mut varmap)?;
    Ok(net)
}

/// What [`evaluate_checkpoint`] is asked.
#[derive(Clone, Debug)]
pub struct CheckpointEvalConfig {
    /// A run directory (its newest checkpoint) or a checkpoint directory.
    pub checkpoint: PathBuf,
    /// The dataset (`val/` and `stats.h5` are used); `None`: the directory
    /// recorded in the checkpoint.
    pub data_dir: Option<PathBuf>,
    /// Tower placement.
    pub devices: Devices,
    /// Images per batch (10-crop batches hold 10 rows per image).
    pub batch_size: usize,
    /// Loader threads.
    pub threads: usize,
    /// Also run the paper's 10-crop test.
    pub ten_crop: bool,
}

/// Centre-crop (and optionally 10-crop) results of a checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointEval {
    /// The checkpoint evaluated.
    pub checkpoint: Checkpoint,
    /// Centre crop.
    pub centre: EvalResult,
    /// 10 views, softmax averaged.
    pub ten_crop: Option<EvalResult>,
}

/// Evaluates a checkpoint on the validation shards of its dataset,
/// telling `sink` after each batch ([`TrainEvent::EvalBatch`]).
pub fn evaluate_checkpoint(
    cfg: &CheckpointEvalConfig,
    sink: &dyn TrainSink,
) -> Result<CheckpointEval> {
    let ck = Checkpoint::open(&cfg.checkpoint)?;
    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| ck.state.data_dir.clone());
    let net = load_network(&ck, &cfg.devices)?;
    let data = loader::DatasetDir::new(&data_dir);
    let val_dir = data.val();
    let data_stats = data.stats();
    let stats_path = if data_stats.is_file() {
        data_stats
    } else {
        ck.stats_path()
    };
    let stats = Stats::open(&stats_path)?;
    let run = |mode: Mode, pass: &'static str| -> Result<EvalResult> {
        let dataset = Dataset::open(&val_dir)?;
        let batch_size = if mode == Mode::TenCrop {
            (cfg.batch_size / 10).max(1)
        } else {
            cfg.batch_size.max(1)
        };
        let loader = Loader::new(
            dataset,
            stats.clone(),
            LoaderConfig {
                mode,
                batch_size,
                threads: cfg.threads.max(1),
                crop: ck.state.architecture.input_size,
                ..LoaderConfig::eval()
            },
        )?;
        let opts = EvalOptions {
            pass,
            ..EvalOptions::default()
        };
        evaluate(&net, &loader, &opts, sink)
    };
    let centre = run(Mode::CenterCrop, "centre crop")?;
    let ten_crop = if cfg.ten_crop {
        Some(run(Mode::TenCrop, "10-crop")?)
    } else {
        None
    };
    Ok(CheckpointEval {
        checkpoint: ck,
        centre,
        ten_crop,
    })
}
