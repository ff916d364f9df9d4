//! The preprocess run: reader thread -> decode/resize workers -> shard
//! writer (the calling thread), joined by bounded channels.
//!
//! Every input member gets a sequence index `i`: its position in the
//! deterministic input order, bad files included. Indices are taken in
//! groups of `open_shards * images_per_shard`; in group `g`, index `i` goes to
//! shard `g * open_shards + i % open_shards`, so the class-ordered input is
//! spread over `open_shards` shards at a time while only those shards are
//! open. The writer puts results back in index order (a bounded window of
//! results in flight), so the output is the same for the same inputs and
//! options, whatever the number of workers and however often the run was
//! interrupted and resumed.
//!
//! A run may be one part of several (see [`crate::parts`]): it then writes
//! only the shards whose id belongs to its part, passing the other inputs
//! over unread, and leaves the dataset's tables to the part that completes
//! last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use loader::format::{self, ClassEntry, Encoding, ShardRecord, ShardSums};

use crate::devkit::{read_devkit, ClassInfo, Devkit};
use crate::error::PreprocessError;
use crate::image::{Decoder256, JpegScaling, ResizeFilter, IMAGE_BYTES};
use crate::manifest::{
    check_and_record_identity, head_tail_hash, record_splits, DatasetIdentity, InputId, ShardEntry,
    SplitManifest, FORMAT_VERSION,
};
use crate::parts::{begin_part, complete_part, Part, PartRecord, PartSplit, PartSummary};
use crate::shard::PipelineShard;
use crate::source::{
    count_dir_members, list_train_classes, stream_members, Labeler, Member, SplitInput,
};
use crate::stats::{finish_stats, ImageColorSums};

/// Default `--images-per-shard`.
pub const DEFAULT_IMAGES_PER_SHARD: usize = 1024;
/// Default `--open-shards`.
pub const DEFAULT_OPEN_SHARDS: usize = 32;

/// What to convert and where.
#[derive(Clone, Debug)]
pub struct PreprocessConfig {
    /// `ILSVRC2012_img_train.tar` (outer tar of per-class tars).
    pub train_tar: Option<PathBuf>,
    /// Extracted train tree `DIR/<wnid>/*.JPEG` (instead of `train_tar`).
    pub train_dir: Option<PathBuf>,
    /// `ILSVRC2012_img_val.tar` (flat); needs `devkit`.
    pub val_tar: Option<PathBuf>,
    /// Extracted val directory `DIR/*.JPEG` (instead of `val_tar`); needs `devkit`.
    pub val_dir: Option<PathBuf>,
    /// `ILSVRC2012_devkit_t12.tar.gz`: class list and val ground truth.
    /// Without it the classes are the train input's WNIDs, sorted.
    pub devkit: Option<PathBuf>,
    /// Output directory (see the workspace README for its layout).
    pub out: PathBuf,
    /// Most images per shard.
    pub images_per_shard: usize,
    /// Shards written at the same time (the number of shards each group of
    /// consecutive inputs is spread over).
    pub open_shards: usize,
    /// Decode/resize threads; 0 = all cores.
    pub workers: usize,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// How JPEGs are decoded before the resize (DCT-domain scaling of large
    /// photos, or full size).
    pub jpeg_scaling: JpegScaling,
    /// How shards store images: raw pixels (the default) or JPEG.
    pub encoding: Encoding,
    /// Set to `true` (e.g. from a Ctrl-C handler) to stop soon; open
    /// temporary shards are removed and the run returns `Interrupted`.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Stop abruptly, as a `kill -9` would (temporary shards are left behind),
    /// after this many shards were completed in this run. For testing resume.
    pub halt_after_shards: Option<u64>,
    /// Convert only this part's share (see [`crate::parts`]); `None`: everything.
    pub part: Option<Part>,
}

impl Default for PreprocessConfig {
    /// Default options, no inputs, and an empty output path.
    fn default() -> Self {
        PreprocessConfig {
            train_tar: None,
            train_dir: None,
            val_tar: None,
            val_dir: None,
            devkit: None,
            out: PathBuf::new(),
            images_per_shard: DEFAULT_IMAGES_PER_SHARD,
            open_shards: DEFAULT_OPEN_SHARDS,
            workers: 0,
            filter: ResizeFilter::default(),
            jpeg_scaling: JpegScaling::default(),
            encoding: Encoding::Raw,
            cancel: None,
            halt_after_shards: None,
            part: None,
        }
    }
}

impl PreprocessConfig {
    /// A config writing to `out` with default options and no inputs yet.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        PreprocessConfig {
            out: out.into(),
            ..PreprocessConfig::default()
        }
    }
}

/// A dataset split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set (also gives the statistics).
    Train,
    /// The validation set.
    Val,
}

impl Split {
    /// `"train"` or `"val"`: the subdirectory of OUT.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// Receives progress from [`run`] (called on the writer thread).
pub trait ProgressSink {
    /// A split starts. `total_bytes`: size of its tar; `total_images`: number
    /// of files of a directory input. Either may be unknown.
    fn start_split(&self, split: Split, total_bytes: Option<u64>, total_images: Option<u64>);
    /// Totals so far in this split: inputs handled (written, skipped, or
    /// passed over because already in a completed shard) and bytes read.
    fn advance(&self, inputs_done: u64, bytes_read: u64);
    /// The split is complete.
    fn finish_split(&self, summary: &SplitSummary);
}

/// A [`ProgressSink`] that ignores everything.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn start_split(&self, _: Split, _: Option<u64>, _: Option<u64>) {}
    fn advance(&self, _: u64, _: u64) {}
    fn finish_split(&self, _: &SplitSummary) {}
}

/// Result of one split (for a part: of the part's share of it).
#[derive(Clone, Debug)]
pub struct SplitSummary {
    /// Which split.
    pub split: Split,
    /// Images in the split's shards (all runs).
    pub images: u64,
    /// Inputs skipped (all runs), listed in `OUT/<split>/skipped.tsv` (for
    /// a part: in its record in `OUT/parts`, until the dataset is finished).
    pub skipped: u64,
    /// Number of shards.
    pub shards: usize,
    /// Images decoded and written by this run (0 when everything was done).
    pub written_this_run: u64,
    /// Wall time of this split in this run, seconds.
    pub seconds: f64,
    /// The part whose share this is; `None` for the whole split.
    pub part: Option<Part>,
}

/// Result of [`run`].
#[derive(Clone, Debug)]
pub struct Summary {
    /// One entry per split converted, train first.
    pub splits: Vec<SplitSummary>,
    /// Training-set statistics (when a train split was converted and held
    /// images; for a part, see [`PartSummary::finished`]).
    pub stats: Option<loader::Stats>,
    /// Number of classes.
    pub classes: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// For a part: whether it finished the dataset, or which parts it left
    /// to do so.
    pub part: Option<PartSummary>,
}

impl Summary {
    /// Images in all shards of the converted splits.
    pub fn images(&self) -> u64 {
        self.splits.iter().map(|s| s.images).sum()
    }
    /// Inputs skipped in the converted splits.
    pub fn skipped(&self) -> u64 {
        self.splits.iter().map(|s| s.skipped).sum()
    }
    /// Images decoded and written by this run.
    pub fn written_this_run(&self) -> u64 {
        self.splits.iter().map(|s| s.written_this_run).sum()
    }
    /// Images written by this run per second of this run.
    pub fn images_per_second(&self) -> f64 {
        self.written_this_run() as f64 / self.seconds.max(1e-9)
    }
}

/// The shard that sequence index `index` belongs to.
pub fn shard_of(index: u64, images_per_shard: usize, open_shards: usize) -> u64 {
    let k = open_shards as u64;
    let group = index / (k * images_per_shard as u64);
    group * k + index % k
}

fn one_of(
    a: &Option<PathBuf>,
    b: &Option<PathBuf>,
    what: &str,
) -> Result<Option<SplitInput>, PreprocessError> {
    match (a, b) {
        (Some(_), Some(_)) => Err(PreprocessError::Config(format!(
            "give either --{what}-tar or --{what}-dir, not both"
        ))),
        (Some(t), None) => Ok(Some(SplitInput::Tar(t.clone()))),
        (None, Some(d)) => Ok(Some(SplitInput::Dir(d.clone()))),
        (None, None) => Ok(None),
    }
}

fn input_id(input: &SplitInput, train: bool) -> Result<InputId, PreprocessError> {
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    match input {
        SplitInput::Tar(p) => {
            let meta = std::fs::metadata(p).map_err(|e| PreprocessError::io(p, e))?;
            if !meta.is_file() {
                return Err(PreprocessError::Config(format!(
                    "{} is not a file",
                    p.display()
                )));
            }
            Ok(InputId {
                kind: "tar".into(),
                name: name_of(p),
                size: meta.len(),
                head_tail_hash: head_tail_hash(p)?,
            })
        }
        SplitInput::Dir(d) => {
            if !d.is_dir() {
                return Err(PreprocessError::Config(format!(
                    "{} is not a directory",
                    d.display()
                )));
            }
            Ok(InputId {
                kind: "dir".into(),
                name: name_of(d),
                size: count_dir_members(d, train)?,
                head_tail_hash: 0,
            })
        }
    }
}

/// Converts the given splits into `cfg.out`: shards, `classes.tsv`,
/// `stats.h5` (train), `manifest.json`, `dataset.json`, `skipped.tsv`.
/// Resumes a previous interrupted run of the same command.
///
/// With `cfg.part`, converts only that part's shards and records the part
/// in `OUT/parts`; the part that finds all parts complete writes the
/// dataset's tables ([`crate::parts::finish`]).
pub fn run(
    cfg: &PreprocessConfig,
    progress: &dyn ProgressSink,
) -> Result<Summary, PreprocessError> {
    let t0 = Instant::now();
    let train = one_of(&cfg.train_tar, &cfg.train_dir, "train")?;
    let val = one_of(&cfg.val_tar, &cfg.val_dir, "val")?;
    if train.is_none() && val.is_none() {
        return Err(PreprocessError::Config(
            "nothing to do: give a train input (--train-tar or --train-dir) and/or a val input (--val-tar or --val-dir)".into(),
        ));
    }
    if val.is_some() && cfg.devkit.is_none() {
        return Err(PreprocessError::Config(
            "the val split needs --devkit (its labels come from the devkit's ground truth)".into(),
        ));
    }
    if cfg.images_per_shard == 0 || cfg.open_shards == 0 {
        return Err(PreprocessError::Config(
            "--images-per-shard and --open-shards must be at least 1".into(),
        ));
    }

    // Identity of the dataset: refuse an OUT holding another one.
    let mut splits_id = BTreeMap::new();
    if let Some(t) = &train {
        splits_id.insert("train".to_string(), input_id(t, true)?);
    }
    if let Some(v) = &val {
        splits_id.insert("val".to_string(), input_id(v, false)?);
    }
    let devkit_id = match &cfg.devkit {
        Some(p) => Some(InputId {
            kind: "devkit".into(),
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: std::fs::metadata(p)
                .map_err(|e| PreprocessError::io(p, e))?
                .len(),
            head_tail_hash: head_tail_hash(p)?,
        }),
        None => None,
    };
    let identity = DatasetIdentity {
        format_version: FORMAT_VERSION,
        images_per_shard: cfg.images_per_shard,
        open_shards: cfg.open_shards,
        resize_filter: cfg.filter.name().to_string(),
        jpeg_scaling: cfg.jpeg_scaling.name().to_string(),
        encoding: match cfg.encoding {
            Encoding::Raw => "raw".into(),
            Encoding::Jpeg { quality } => format!("jpeg-q{quality}"),
        },
        devkit: devkit_id,
        splits: splits_id,
    };
    check_and_record_identity(&cfg.out, &identity)?;
    if let Some(part) = cfg.part {
        begin_part(&cfg.out, part)?;
    }

    // Classes.
    let devkit: Option<Devkit> = match &cfg.devkit {
        Some(p) => Some(read_devkit(p).map_err(|e| PreprocessError::Devkit {
            path: p.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let classes: Vec<ClassInfo> = match (&devkit, &train) {
        (Some(dk), _) => dk.classes.clone(),
        (None, Some(t)) => list_train_classes(t)?
            .into_iter()
            .enumerate()
            .map(|(index, wnid)| ClassInfo {
                index,
                wnid,
                words: String::new(),
                ilsvrc_id: 0,
            })
            .collect(),
        (None, None) => unreachable!("val without devkit was refused above"),
    };
    if classes.is_empty() {
        return Err(PreprocessError::Config(
            "no classes found in the inputs".into(),
        ));
    }
    match cfg.part {
        // The dataset's class table is written when it is finished.
        Some(_) => {
            check_classes(&cfg.out, &classes)?;
        }
        None => write_classes(&cfg.out, &classes, devkit.is_some())?,
    }
    let wnid_index: HashMap<String, usize> =
        classes.iter().map(|c| (c.wnid.clone(), c.index)).collect();

    let mut summary = Summary {
        splits: Vec::new(),
        stats: None,
        classes: classes.len(),
        seconds: 0.0,
        part: None,
    };
    let mut record = cfg
        .part
        .map(|part| PartRecord::new(part, &classes, devkit.is_some()));
    let mut splits = Vec::new();
    if let Some(t) = &train {
        splits.push((Split::Train, t, Labeler::Train(&wnid_index)));
    }
    if let Some(v) = &val {
        let dk = devkit.as_ref().expect("checked above");
        splits.push((Split::Val, v, Labeler::Val(dk)));
    }
    for (split, input, labeler) in splits {
        let (s, gathered) = process_split(cfg, split, input, &labeler, progress)?;
        match &mut record {
            Some(record) => {
                record.splits.insert(
                    split.name().to_string(),
                    PartSplit {
                        manifest: gathered.manifest,
                        skipped_inputs: gathered.skipped,
                    },
                );
            }
            None => {
                write_skipped(&cfg.out, split, &gathered.skipped)?;
                if let Some(st) = gathered.sums.as_ref().and_then(finish_stats) {
                    format::write_stats(&format::stats_path(&cfg.out), &st)?;
                    summary.stats = Some(st);
                }
                // Each split is recorded as soon as it is complete.
                record_splits(
                    &cfg.out,
                    classes.len(),
                    vec![(split.name(), gathered.manifest.clone())],
                )?;
            }
        }
        progress.finish_split(&s);
        summary.splits.push(s);
    }
    if let (Some(part), Some(record)) = (cfg.part, &record) {
        summary.part = Some(complete_part(&cfg.out, part, record)?);
    }
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// Refuses a `classes.tsv` in `out` that lists other WNIDs than `classes`;
/// true when there is one.
fn check_classes(out: &Path, classes: &[ClassInfo]) -> Result<bool, PreprocessError> {
    if !format::classes_path(out).exists() {
        return Ok(false);
    }
    let old = format::read_classes(out)?;
    let same = old.len() == classes.len() && old.iter().zip(classes).all(|(a, b)| a.wnid == b.wnid);
    if !same {
        return Err(PreprocessError::DifferentDataset {
            out: out.to_path_buf(),
            reason: format!(
                "its classes.tsv lists {} classes that differ from the {} classes of these inputs",
                old.len(),
                classes.len()
            ),
        });
    }
    Ok(true)
}

/// Writes `classes.tsv`, or checks that the one present lists the same WNIDs
/// (and keeps it when `classes` carry no words).
pub(crate) fn write_classes(
    out: &Path,
    classes: &[ClassInfo],
    with_words: bool,
) -> Result<(), PreprocessError> {
    if check_classes(out, classes)? && !with_words {
        return Ok(());
    }
    let entries: Vec<ClassEntry> = classes
        .iter()
        .map(|c| ClassEntry {
            index: c.index,
            wnid: c.wnid.clone(),
            words: c.words.clone(),
        })
        .collect();
    format::write_classes(out, &entries)?;
    Ok(())
}

/// What a worker made of one member.
enum Outcome {
    Image {
        label: i64,
        /// The pixels (statistics are taken from them).
        image: Vec<u8>,
        /// What the shard stores when it is not the pixels (a JPEG stream).
        encoded: Option<Vec<u8>>,
        color: ImageColorSums,
    },
    Skipped(String),
    /// Its shard is not written by this run (already complete, or another
    /// part's): nothing to write.
    NotWritten,
}

struct Done {
    index: u64,
    name: String,
    outcome: Outcome,
}

/// Which inputs this run writes: those of shards not yet complete, and for a
/// part only those of its own shards.
struct ShardFilter {
    done: HashSet<u64>,
    part: Option<Part>,
    images_per_shard: usize,
    open_shards: usize,
}

impl ShardFilter {
    fn writes_shard(&self, shard: u64) -> bool {
        !self.done.contains(&shard) && self.part.is_none_or(|p| p.owns_shard(shard))
    }

    fn writes(&self, index: u64) -> bool {
        self.writes_shard(shard_of(index, self.images_per_shard, self.open_shards))
    }
}

fn worker(
    rx: Receiver<Member>,
    tx: Sender<Done>,
    recycled: Receiver<Vec<u8>>,
    filter: &ShardFilter,
    cfg: &PreprocessConfig,
    with_stats: bool,
) {
    let mut dec = Decoder256::with_options(cfg.filter, cfg.jpeg_scaling);
    for m in rx.iter() {
        let outcome = if !filter.writes(m.index) {
            Outcome::NotWritten
        } else {
            match (m.label, m.data) {
                (Err(r), _) => Outcome::Skipped(r),
                (_, Some(Err(r))) => Outcome::Skipped(r),
                (_, None) => Outcome::Skipped("not read".into()),
                (Ok(label), Some(Ok(bytes))) => {
                    let mut image = recycled
                        .try_recv()
                        .unwrap_or_else(|_| vec![0u8; IMAGE_BYTES]);
                    match dec.decode_into(&bytes, &mut image) {
                        Ok(()) => {
                            let color = if with_stats {
                                ImageColorSums::of(&image)
                            } else {
                                ImageColorSums::default()
                            };
                            match encode(cfg.encoding, &image) {
                                Ok(encoded) => Outcome::Image {
                                    label,
                                    image,
                                    encoded,
                                    color,
                                },
                                Err(e) => Outcome::Skipped(e.to_string()),
                            }
                        }
                        Err(e) => Outcome::Skipped(e.to_string()),
                    }
                }
            }
        };
        if tx
            .send(Done {
                index: m.index,
                name: m.name,
                outcome,
            })
            .is_err()
        {
            return;
        }
    }
}

/// What the shard stores for a decoded image other than its pixels: `None`
/// for raw shards (the pixels themselves), a JPEG stream otherwise.
fn encode(encoding: Encoding, image: &[u8]) -> Result<Option<Vec<u8>>, format::JpegError> {
    match encoding {
        Encoding::Raw => Ok(None),
        Encoding::Jpeg { .. } => {
            let mut out = Vec::with_capacity(IMAGE_BYTES / 6);
            encoding.encode(image, crate::image::SIDE, &mut out)?;
            Ok(Some(out))
        }
    }
}

/// Completed shard ids in `dir`, after removing stale temporary files: all
/// of them, or for a part those of its own shards (the other parts may be
/// writing theirs).
fn scan_split_dir(dir: &Path, part: Option<Part>) -> Result<HashSet<u64>, PreprocessError> {
    std::fs::create_dir_all(dir).map_err(|e| PreprocessError::io(dir, e))?;
    let mut done = HashSet::new();
    for e in std::fs::read_dir(dir).map_err(|e| PreprocessError::io(dir, e))? {
        let e = e.map_err(|e| PreprocessError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = match part {
            None => name.ends_with(format::TMP_SUFFIX),
            Some(p) => format::parse_shard_tmp_file_name(&name).is_some_and(|id| p.owns_shard(id)),
        };
        if stale {
            std::fs::remove_file(e.path()).map_err(|err| PreprocessError::io(e.path(), err))?;
        } else if let Some(id) = format::parse_shard_file_name(&name) {
            done.insert(id);
        }
    }
    Ok(done)
}

enum Stop {
    Finished,
    Cancelled,
    Halted,
}

/// Writes the split's shards (for a part: its own), then gathers what the
/// shards of the split (of the part) hold.
fn process_split(
    cfg: &PreprocessConfig,
    split: Split,
    input: &SplitInput,
    labeler: &Labeler<'_>,
    progress: &dyn ProgressSink,
) -> Result<(SplitSummary, Gathered), PreprocessError> {
    let t0 = Instant::now();
    let dir = format::split_dir(&cfg.out, split.name());
    let filter = ShardFilter {
        done: scan_split_dir(&dir, cfg.part)?,
        part: cfg.part,
        images_per_shard: cfg.images_per_shard,
        open_shards: cfg.open_shards,
    };
    let with_stats = split == Split::Train;
    let (total_bytes, total_images) = match input {
        SplitInput::Tar(p) => (std::fs::metadata(p).ok().map(|m| m.len()), None),
        SplitInput::Dir(d) => (None, Some(count_dir_members(d, split == Split::Train)?)),
    };
    progress.start_split(split, total_bytes, total_images);

    let workers = if cfg.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.workers
    };
    // Inputs in flight (read, decoding, or waiting to be written in order).
    // Wide enough that one slow (or descheduled) worker does not stall the
    // others while the writer waits for its result; bounded, so memory is
    // about window x (file + 192 KiB), e.g. 256 x 300 KiB = 75 MiB.
    let window = (64 * workers).clamp(256, 1024);
    let (work_tx, work_rx) = bounded::<Member>(window);
    let (done_tx, done_rx) = bounded::<Done>(window);
    let (credit_tx, credit_rx) = bounded::<()>(window);
    // Image buffers handed back by the writer for reuse.
    let (recycle_tx, recycle_rx) = bounded::<Vec<u8>>(window);
    for _ in 0..window {
        credit_tx.send(()).expect("credit channel has room");
    }
    let bytes_read = Arc::new(AtomicU64::new(0));
    let cancelled = || {
        cfg.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };

    // What the shards finished by this run record, so that gathering the
    // split reads back only shards written before.
    let mut finished = FinishedShards::default();
    let (written, reader_result) = std::thread::scope(|scope| {
        let reader = {
            let bytes_read = bytes_read.clone();
            let filter = &filter;
            scope.spawn(move || {
                let want = |i: u64| filter.writes(i);
                let mut emit = |m: Member| credit_rx.recv().is_ok() && work_tx.send(m).is_ok();
                stream_members(input, labeler, bytes_read, &want, &mut emit)
            })
        };
        for _ in 0..workers {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            let filter = &filter;
            let recycled = recycle_rx.clone();
            scope.spawn(move || worker(rx, tx, recycled, filter, cfg, with_stats));
        }
        drop(work_rx);
        drop(done_tx);
        let writer = Writer {
            cfg,
            dir: &dir,
            bytes_read: &bytes_read,
            progress,
            with_stats,
            cancelled: &cancelled,
        };
        let written = writer.write_in_order(done_rx, credit_tx, recycle_tx, &mut finished);
        let reader_result = reader
            .join()
            .map_err(|_| PreprocessError::Internal("the reader thread panicked".into()))
            .and_then(|r| r);
        (written, reader_result)
    });
    let (stop_kind, mut open, written_count) = written?;
    match stop_kind {
        Stop::Halted => {
            // Leave the temporary files behind, as an abrupt kill would.
            drop(open);
            return Err(PreprocessError::Interrupted);
        }
        Stop::Cancelled => {
            remove_open(open);
            return Err(PreprocessError::Interrupted);
        }
        Stop::Finished => {}
    }
    if let Err(e) = reader_result {
        // Completed shards stay; the open (incomplete) group is dropped.
        remove_open(open);
        return Err(e);
    }
    for (id, w) in std::mem::take(&mut open) {
        finished.add(id, w.finish()?);
    }

    // Gather the split from all its shards (this run's and earlier runs').
    let gathered = gather_split(&cfg.out, split, cfg.part, finished)?;
    let summary = SplitSummary {
        split,
        images: gathered.manifest.images,
        skipped: gathered.manifest.skipped,
        shards: gathered.manifest.shards.len(),
        written_this_run: written_count,
        seconds: t0.elapsed().as_secs_f64(),
        part: cfg.part,
    };
    Ok((summary, gathered))
}

/// What the complete shards of a split hold.
pub(crate) struct Gathered {
    /// Shards in id order, with their counts.
    pub manifest: SplitManifest,
    /// Sum of the shards' statistics sums (train: `Some`, even for no images).
    pub sums: Option<ShardSums>,
    /// Skipped inputs `(member, reason)` in shard order.
    pub skipped: Vec<(String, String)>,
}

/// What the shards a run finished record, kept as they finish: each shard's
/// counts and skipped inputs, and their statistics sums already added up
/// (one shard's per-pixel sums are 1.5 MB; ImageNet has 1,252 train shards).
#[derive(Default)]
pub(crate) struct FinishedShards {
    /// By shard id, without their sums.
    records: BTreeMap<u64, ShardRecord>,
    /// The sum of their sums (train shards).
    sums: Option<ShardSums>,
}

impl FinishedShards {
    /// Keeps what shard `id` records, adding its sums to the total.
    fn add(&mut self, id: u64, mut record: ShardRecord) {
        if let Some(st) = record.sums.take() {
            match &mut self.sums {
                Some(acc) => acc.add(&st),
                None => self.sums = Some(st),
            }
        }
        self.records.insert(id, record);
    }
}

/// The records of the split's complete shards (of `part`'s own only, when
/// given): those `known` (the shards this run finished) as kept, the others
/// read from their files.
pub(crate) fn gather_split(
    out: &Path,
    split: Split,
    part: Option<Part>,
    known: FinishedShards,
) -> Result<Gathered, PreprocessError> {
    let FinishedShards {
        records: mut known,
        sums: known_sums,
    } = known;
    let dir = format::split_dir(out, split.name());
    let mut gathered = Gathered {
        manifest: SplitManifest::default(),
        sums: (split == Split::Train).then(|| ShardSums::zero(IMAGE_BYTES)),
        skipped: Vec::new(),
    };
    let manifest = &mut gathered.manifest;
    for (id, path) in format::list_shards(&dir)? {
        if part.is_some_and(|p| !p.owns_shard(id)) {
            continue;
        }
        let record = match known.remove(&id) {
            Some(record) => record,
            None => format::read_shard_record(&path)?,
        };
        manifest.shards.push(ShardEntry {
            file: format!("{}/{}", split.name(), format::shard_file_name(id)),
            images: record.images,
            skipped: record.skipped.len() as u64,
        });
        manifest.images += record.images;
        manifest.skipped += record.skipped.len() as u64;
        gathered.skipped.extend(record.skipped);
        if let (Some(acc), Some(st)) = (&mut gathered.sums, &record.sums) {
            acc.add(st);
        }
    }
    // Integer sums: adding this run's total last gives the same result.
    if let (Some(acc), Some(st)) = (&mut gathered.sums, &known_sums) {
        acc.add(st);
    }
    Ok(gathered)
}

/// Writes `OUT/<split>/skipped.tsv` (`member<TAB>reason` lines).
pub(crate) fn write_skipped(
    out: &Path,
    split: Split,
    skipped: &[(String, String)],
) -> Result<(), PreprocessError> {
    let mut text = String::new();
    for (name, reason) in skipped {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        text.push_str(&format!("{}\t{}\n", clean(name), clean(reason)));
    }
    let path = format::split_dir(out, split.name()).join(format::SKIPPED_FILE);
    let tmp = format::unique_tmp_path(&path);
    std::fs::write(&tmp, text).map_err(|e| PreprocessError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| PreprocessError::io(&path, e))
}

fn remove_open(open: BTreeMap<u64, PipelineShard>) {
    for (_, w) in open {
        w.abandon();
    }
}

type Written = (Stop, BTreeMap<u64, PipelineShard>, u64);

struct Writer<'a> {
    cfg: &'a PreprocessConfig,
    dir: &'a Path,
    bytes_read: &'a AtomicU64,
    progress: &'a dyn ProgressSink,
    with_stats: bool,
    cancelled: &'a dyn Fn() -> bool,
}

impl Writer<'_> {
    /// The writer: takes results in index order and appends them to the open
    /// shards of the current group; closes a group's shards when the next group
    /// starts. Returns why it stopped, the shards still open (the last group),
    /// and the number of images written.
    fn write_in_order(
        &self,
        done_rx: Receiver<Done>,
        credit_tx: Sender<()>,
        recycle_tx: Sender<Vec<u8>>,
        finished: &mut FinishedShards,
    ) -> Result<Written, PreprocessError> {
        let Writer {
            cfg,
            dir,
            bytes_read,
            progress,
            with_stats,
            cancelled,
        } = *self;
        let k = cfg.open_shards as u64;
        let group_len = k * cfg.images_per_shard as u64;
        let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
        let mut next = 0u64;
        let mut group = 0u64;
        let mut open: BTreeMap<u64, PipelineShard> = BTreeMap::new();
        let mut written = 0u64;
        let mut finished_shards = 0u64;
        let mut last_report = Instant::now();
        for d in done_rx.iter() {
            pending.insert(d.index, d);
            while let Some(d) = pending.remove(&next) {
                let g = next / group_len;
                if g != group {
                    for (id, w) in std::mem::take(&mut open) {
                        finished.add(id, w.finish()?);
                        finished_shards += 1;
                        if cfg.halt_after_shards.is_some_and(|h| finished_shards >= h) {
                            return Ok((Stop::Halted, open, written));
                        }
                    }
                    group = g;
                }
                let id = g * k + next % k;
                match d.outcome {
                    Outcome::NotWritten => {}
                    Outcome::Skipped(reason) => {
                        open_shard(&mut open, dir, id, cfg, with_stats)?
                            .push_skipped(&d.name, &reason);
                    }
                    Outcome::Image {
                        label,
                        image,
                        encoded,
                        color,
                    } => {
                        let stored = encoded.as_deref().unwrap_or(&image);
                        open_shard(&mut open, dir, id, cfg, with_stats)?
                            .push_image(&image, stored, label, &d.name, &color)?;
                        written += 1;
                        let _ = recycle_tx.try_send(image);
                    }
                }
                next += 1;
                // Give the reader room for one more input; it may have stopped.
                let _ = credit_tx.send(());
                if last_report.elapsed().as_millis() >= 100 {
                    progress.advance(next, bytes_read.load(Ordering::Relaxed));
                    last_report = Instant::now();
                    if cancelled() {
                        return Ok((Stop::Cancelled, open, written));
                    }
                }
            }
        }
        progress.advance(next, bytes_read.load(Ordering::Relaxed));
        if cancelled() {
            return Ok((Stop::Cancelled, open, written));
        }
        if !pending.is_empty() {
            return Err(PreprocessError::Internal(format!(
                "{} results arrived without their predecessors",
                pending.len()
            )));
        }
        Ok((Stop::Finished, open, written))
    }
}

fn open_shard<'a>(
    open: &'a mut BTreeMap<u64, PipelineShard>,
    dir: &Path,
    id: u64,
    cfg: &PreprocessConfig,
    with_stats: bool,
) -> Result<&'a mut PipelineShard, PreprocessError> {
    Ok(match open.entry(id) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => e.insert(PipelineShard::create(
            dir,
            id,
            cfg.encoding,
            cfg.images_per_shard,
            with_stats,
        )?),
    })
}
