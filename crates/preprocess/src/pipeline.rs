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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use loader::format::{self, ClassEntry, Encoding, ShardSums};

use crate::devkit::{read_devkit, ClassInfo, Devkit};
use crate::error::PreprocessError;
use crate::image::{Decoder256, ResizeFilter, IMAGE_BYTES};
use crate::manifest::{
    check_and_record_identity, head_tail_hash, record_split, DatasetIdentity, InputId, ShardEntry,
    SplitManifest, FORMAT_VERSION,
};
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
    /// How shards store images: raw pixels (the default) or JPEG.
    pub encoding: Encoding,
    /// Set to `true` (e.g. from a Ctrl-C handler) to stop soon; open
    /// temporary shards are removed and the run returns `Interrupted`.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Stop abruptly, as a `kill -9` would (temporary shards are left behind),
    /// after this many shards were completed in this run. For testing resume.
    pub halt_after_shards: Option<u64>,
}

impl PreprocessConfig {
    /// A config writing to `out` with default options and no inputs yet.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        PreprocessConfig {
            train_tar: None,
            train_dir: None,
            val_tar: None,
            val_dir: None,
            devkit: None,
            out: out.into(),
            images_per_shard: DEFAULT_IMAGES_PER_SHARD,
            open_shards: DEFAULT_OPEN_SHARDS,
            workers: 0,
            filter: ResizeFilter::default(),
            encoding: Encoding::Raw,
            cancel: None,
            halt_after_shards: None,
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

/// Result of one split.
#[derive(Clone, Debug)]
pub struct SplitSummary {
    /// Which split.
    pub split: Split,
    /// Images in the split's shards (all runs).
    pub images: u64,
    /// Inputs skipped (all runs), listed in `OUT/<split>/skipped.tsv`.
    pub skipped: u64,
    /// Number of shards.
    pub shards: usize,
    /// Images decoded and written by this run (0 when everything was done).
    pub written_this_run: u64,
    /// Wall time of this split in this run, seconds.
    pub seconds: f64,
}

/// Result of [`run`].
#[derive(Clone, Debug)]
pub struct Summary {
    /// One entry per split converted, train first.
    pub splits: Vec<SplitSummary>,
    /// Training-set statistics (when a train split was converted and held images).
    pub stats: Option<loader::Stats>,
    /// Number of classes.
    pub classes: usize,
    /// Wall time, seconds.
    pub seconds: f64,
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
        encoding: match cfg.encoding {
            Encoding::Raw => "raw".into(),
            Encoding::Jpeg { quality } => format!("jpeg-q{quality}"),
        },
        devkit: devkit_id,
        splits: splits_id,
    };
    check_and_record_identity(&cfg.out, &identity)?;

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
    write_classes(&cfg.out, &classes, devkit.is_some())?;
    let wnid_index: HashMap<String, usize> =
        classes.iter().map(|c| (c.wnid.clone(), c.index)).collect();

    let mut summary = Summary {
        splits: Vec::new(),
        stats: None,
        classes: classes.len(),
        seconds: 0.0,
    };
    if let Some(t) = &train {
        let labeler = Labeler::Train(&wnid_index);
        let (s, sums) = process_split(cfg, Split::Train, t, &labeler, classes.len(), progress)?;
        if let Some(st) = sums.as_ref().and_then(finish_stats) {
            format::write_stats(&format::stats_path(&cfg.out), &st)?;
            summary.stats = Some(st);
        }
        summary.splits.push(s);
    }
    if let Some(v) = &val {
        let dk = devkit.as_ref().expect("checked above");
        let labeler = Labeler::Val(dk);
        let (s, _) = process_split(cfg, Split::Val, v, &labeler, classes.len(), progress)?;
        summary.splits.push(s);
    }
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// Writes `classes.tsv`, or checks that the one present lists the same WNIDs.
fn write_classes(
    out: &Path,
    classes: &[ClassInfo],
    with_words: bool,
) -> Result<(), PreprocessError> {
    if format::classes_path(out).exists() {
        let old = format::read_classes(out)?;
        let same =
            old.len() == classes.len() && old.iter().zip(classes).all(|(a, b)| a.wnid == b.wnid);
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
        if !with_words {
            return Ok(());
        }
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
    /// Its shard is already complete: nothing to write.
    AlreadyDone,
}

struct Done {
    index: u64,
    name: String,
    outcome: Outcome,
}

fn worker(
    rx: Receiver<Member>,
    tx: Sender<Done>,
    recycled: Receiver<Vec<u8>>,
    done_shards: &HashSet<u64>,
    cfg: &PreprocessConfig,
    with_stats: bool,
) {
    let mut dec = Decoder256::with_filter(cfg.filter);
    for m in rx.iter() {
        let outcome =
            if done_shards.contains(&shard_of(m.index, cfg.images_per_shard, cfg.open_shards)) {
                Outcome::AlreadyDone
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

/// Completed shard ids in `dir`, after removing stale temporary files.
fn scan_split_dir(dir: &Path) -> Result<HashSet<u64>, PreprocessError> {
    std::fs::create_dir_all(dir).map_err(|e| PreprocessError::io(dir, e))?;
    let mut done = HashSet::new();
    for e in std::fs::read_dir(dir).map_err(|e| PreprocessError::io(dir, e))? {
        let e = e.map_err(|e| PreprocessError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(format::TMP_SUFFIX) {
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

fn process_split(
    cfg: &PreprocessConfig,
    split: Split,
    input: &SplitInput,
    labeler: &Labeler<'_>,
    classes: usize,
    progress: &dyn ProgressSink,
) -> Result<(SplitSummary, Option<ShardSums>), PreprocessError> {
    let t0 = Instant::now();
    let dir = format::split_dir(&cfg.out, split.name());
    let done_shards = scan_split_dir(&dir)?;
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

    let (written, reader_result) = std::thread::scope(|scope| {
        let reader = {
            let bytes_read = bytes_read.clone();
            let done_shards = &done_shards;
            scope.spawn(move || {
                let want = |i: u64| {
                    !done_shards.contains(&shard_of(i, cfg.images_per_shard, cfg.open_shards))
                };
                let mut emit = |m: Member| credit_rx.recv().is_ok() && work_tx.send(m).is_ok();
                stream_members(input, labeler, bytes_read, &want, &mut emit)
            })
        };
        for _ in 0..workers {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            let done_shards = &done_shards;
            let recycled = recycle_rx.clone();
            scope.spawn(move || worker(rx, tx, recycled, done_shards, cfg, with_stats));
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
        let written = writer.write_in_order(done_rx, credit_tx, recycle_tx);
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
    for (_, w) in std::mem::take(&mut open) {
        w.finish()?;
    }

    // Gather the split from all its shards (this run's and earlier runs').
    let mut manifest = SplitManifest::default();
    let mut sums = with_stats.then(|| ShardSums::zero(IMAGE_BYTES));
    let mut skipped_tsv = String::new();
    for (id, path) in format::list_shards(&dir)? {
        let record = format::read_shard_record(&path)?;
        manifest.shards.push(ShardEntry {
            file: format!("{}/{}", split.name(), format::shard_file_name(id)),
            images: record.images,
            skipped: record.skipped.len() as u64,
        });
        manifest.images += record.images;
        manifest.skipped += record.skipped.len() as u64;
        for (name, reason) in &record.skipped {
            let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
            skipped_tsv.push_str(&format!("{}\t{}\n", clean(name), clean(reason)));
        }
        if let (Some(acc), Some(st)) = (&mut sums, &record.sums) {
            acc.add(st);
        }
    }
    let skipped_path = dir.join(format::SKIPPED_FILE);
    std::fs::write(&skipped_path, skipped_tsv)
        .map_err(|e| PreprocessError::io(&skipped_path, e))?;
    let summary = SplitSummary {
        split,
        images: manifest.images,
        skipped: manifest.skipped,
        shards: manifest.shards.len(),
        written_this_run: written_count,
        seconds: t0.elapsed().as_secs_f64(),
    };
    record_split(&cfg.out, classes, split.name(), manifest)?;
    progress.finish_split(&summary);
    Ok((summary, sums))
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
                    for (_, w) in std::mem::take(&mut open) {
                        w.finish()?;
                        finished_shards += 1;
                        if cfg.halt_after_shards.is_some_and(|h| finished_shards >= h) {
                            return Ok((Stop::Halted, open, written));
                        }
                    }
                    group = g;
                }
                let id = g * k + next % k;
                match d.outcome {
                    Outcome::AlreadyDone => {}
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
