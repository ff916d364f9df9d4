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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use decode::{DecodeOptions, Decoder256, IMAGE_BYTES};
use shards::atomic::TMP_SUFFIX;
use shards::{DatasetDir, Encoding, JpegError, Split};

use crate::config::PreprocessConfig;
use crate::devkit::{read_devkit, ClassInfo, Devkit};
use crate::error::{OptionsError, PreprocessError};
use crate::layout::LayoutKind;
use crate::manifest::{
    check_and_record_identity, head_tail_hash, record_splits, DatasetIdentity, InputId,
    FORMAT_VERSION,
};
use crate::part::Part;
use crate::parts::{begin_part, complete_part, PartRecord};
use crate::progress::ProgressSink;
use crate::shard::PipelineShard;
use crate::source::{
    count_dir_members, list_train_classes, stream_members, Labeler, Member, SplitInput,
};
use crate::stats::ImageColorSums;
use crate::summary::{SplitSummary, Summary};
use crate::tables::{
    check_classes, gather_split, write_classes, write_split_tables, FinishedShards, Gathered,
};

/// The shard that sequence index `index` belongs to.
pub fn shard_of(index: u64, images_per_shard: usize, open_shards: usize) -> u64 {
    let k = open_shards as u64;
    let group = index / (k * images_per_shard as u64);
    group * k + index % k
}

/// The inputs of a run, one per split given.
struct Inputs {
    train: Option<SplitInput>,
    val: Option<SplitInput>,
    /// The devkit: `--devkit`, or the one the `--from` paths hold.
    devkit: Option<PathBuf>,
    /// The class list the layout ships (Kaggle, Hugging Face).
    classes: Option<Vec<(String, String)>>,
    /// Kaggle's val WNIDs by image id.
    val_wnids: Option<HashMap<String, String>>,
    /// The layout `--from` holds.
    layout: Option<LayoutKind>,
}

impl Inputs {
    /// The inputs `cfg` names, refusing options that describe no valid run.
    fn of(cfg: &PreprocessConfig) -> Result<Inputs, PreprocessError> {
        let one_of = |tar: &Option<PathBuf>, dir: &Option<PathBuf>, split| match (tar, dir) {
            (Some(_), Some(_)) => Err(OptionsError::BothInputs(split)),
            (Some(t), None) => Ok(Some(SplitInput::Tar(t.clone()))),
            (None, Some(d)) => Ok(Some(SplitInput::Dir(d.clone()))),
            (None, None) => Ok(None),
        };
        let mut inputs = Inputs {
            train: one_of(&cfg.train_tar, &cfg.train_dir, Split::Train)?,
            val: one_of(&cfg.val_tar, &cfg.val_dir, Split::Val)?,
            devkit: cfg.devkit.clone(),
            classes: None,
            val_wnids: None,
            layout: None,
        };
        if !cfg.from.is_empty() {
            if inputs.train.is_some() || inputs.val.is_some() {
                return Err(OptionsError::FromAndSplitFlags.into());
            }
            let layout = crate::layout::detect_layout(&cfg.from)?;
            inputs.train = layout.train;
            inputs.val = layout.val;
            inputs.devkit = cfg.devkit.clone().or(layout.devkit);
            inputs.classes = layout.classes;
            inputs.val_wnids = layout.val_wnids;
            inputs.layout = Some(layout.kind);
        }
        if inputs.train.is_none() && inputs.val.is_none() {
            return Err(OptionsError::NothingToDo.into());
        }
        // Val labels come from the devkit unless the layout carries them.
        let val_labelled = inputs.val_wnids.is_some()
            || matches!(
                inputs.val,
                Some(SplitInput::HfTars(_) | SplitInput::HfParquet(_))
            );
        if inputs.val.is_some() && inputs.devkit.is_none() && !val_labelled {
            return Err(OptionsError::ValNeedsDevkit.into());
        }
        if cfg.images_per_shard == 0 || cfg.open_shards == 0 {
            return Err(OptionsError::ZeroShardSize.into());
        }
        Ok(inputs)
    }

    /// The splits given, train first.
    fn splits(&self) -> impl Iterator<Item = (Split, &SplitInput)> {
        [(Split::Train, &self.train), (Split::Val, &self.val)]
            .into_iter()
            .filter_map(|(split, input)| Some((split, input.as_ref()?)))
    }
}

fn input_id(input: &SplitInput, split: Split) -> Result<InputId, PreprocessError> {
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    match input {
        SplitInput::Tar(p) => {
            let meta = std::fs::metadata(p).map_err(|e| PreprocessError::io(p, e))?;
            if !meta.is_file() {
                return Err(OptionsError::NotAFile(p.clone()).into());
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
                return Err(OptionsError::NotADirectory(d.clone()).into());
            }
            Ok(InputId {
                kind: "dir".into(),
                name: name_of(d),
                size: count_dir_members(d, split == Split::Train)?,
                head_tail_hash: 0,
            })
        }
        SplitInput::KaggleZip { zip, prefix } => {
            let id = files_id("zip", std::slice::from_ref(zip))?;
            Ok(InputId {
                name: format!("{}/{prefix}", id.name),
                ..id
            })
        }
        SplitInput::HfTars(files) => files_id("tar.gz", files),
        SplitInput::HfParquet(files) => files_id("parquet", files),
    }
}

/// The identity of a list of files: their names, total size and hashes.
fn files_id(kind: &str, files: &[PathBuf]) -> Result<InputId, PreprocessError> {
    let mut names = Vec::new();
    let (mut size, mut hash) = (0u64, 0u64);
    for f in files {
        let meta = std::fs::metadata(f).map_err(|e| PreprocessError::io(f, e))?;
        if !meta.is_file() {
            return Err(OptionsError::NotAFile(f.clone()).into());
        }
        names.push(
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        size += meta.len();
        hash = hash.rotate_left(5) ^ head_tail_hash(f)?;
    }
    Ok(InputId {
        kind: kind.into(),
        name: names.join(","),
        size,
        head_tail_hash: hash,
    })
}

/// What identifies the dataset `cfg` writes: inputs and options.
fn identity(cfg: &PreprocessConfig, inputs: &Inputs) -> Result<DatasetIdentity, PreprocessError> {
    let mut splits = BTreeMap::new();
    for (split, input) in inputs.splits() {
        splits.insert(split.name().to_owned(), input_id(input, split)?);
    }
    let devkit = match &inputs.devkit {
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
    Ok(DatasetIdentity {
        format_version: FORMAT_VERSION,
        images_per_shard: cfg.images_per_shard,
        open_shards: cfg.open_shards,
        resize_filter: cfg.filter.name().to_string(),
        jpeg_scaling: cfg.jpeg_scaling.name().to_string(),
        max_pixels: cfg.max_pixels,
        encoding: match cfg.encoding {
            Encoding::Raw => "raw".into(),
            Encoding::Jpeg { quality } => format!("jpeg-q{quality}"),
        },
        devkit,
        splits,
    })
}

/// The class list: the devkit's, or the one the layout ships, or the
/// train input's WNIDs sorted.
fn dataset_classes(
    devkit: Option<&Devkit>,
    inputs: &Inputs,
) -> Result<Vec<ClassInfo>, PreprocessError> {
    let info = |(index, (wnid, words)): (usize, (String, String))| ClassInfo {
        index,
        wnid,
        words,
        ilsvrc_id: 0,
    };
    let classes: Vec<ClassInfo> = match (devkit, &inputs.classes, &inputs.train) {
        (Some(dk), _, _) => dk.classes.clone(),
        (None, Some(list), _) => list.iter().cloned().enumerate().map(info).collect(),
        (None, None, Some(t)) => list_train_classes(t)?
            .into_iter()
            .map(|w| (w, String::new()))
            .enumerate()
            .map(info)
            .collect(),
        (None, None, None) => unreachable!("val without devkit is refused by Inputs::of"),
    };
    if classes.is_empty() {
        return Err(OptionsError::NoClasses.into());
    }
    Ok(classes)
}

/// Converts the given splits into `cfg.out`: shards, `classes.tsv`,
/// `stats.h5` (train), `manifest.json`, `dataset.json`, `skipped.tsv`.
/// Resumes a previous interrupted run of the same command.
///
/// With `cfg.part`, converts only that part's shards and records the part
/// in `OUT/parts`; the part that finds all parts complete writes the
/// dataset's tables ([`crate::finish`]).
pub fn run(
    cfg: &PreprocessConfig,
    progress: &dyn ProgressSink,
) -> Result<Summary, PreprocessError> {
    let t0 = Instant::now();
    let inputs = Inputs::of(cfg)?;
    if let Some(kind) = inputs.layout {
        progress.layout(kind);
    }
    // Identity of the dataset: refuse an OUT holding another one.
    check_and_record_identity(&cfg.out, &identity(cfg, &inputs)?)?;
    if let Some(part) = cfg.part {
        begin_part(&cfg.out, part)?;
    }
    let devkit = match &inputs.devkit {
        Some(path) => Some(read_devkit(path).map_err(|source| PreprocessError::Devkit {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let classes = dataset_classes(devkit.as_ref(), &inputs)?;
    let with_words = devkit.is_some() || inputs.classes.is_some();
    match cfg.part {
        // The dataset's class table is written when it is finished.
        Some(_) => {
            check_classes(&cfg.out, &classes)?;
        }
        None => write_classes(&cfg.out, &classes, with_words)?,
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
        .map(|part| PartRecord::new(part, &classes, with_words));
    let class_wnids: Vec<String> = classes.iter().map(|c| c.wnid.clone()).collect();
    for (split, input) in inputs.splits() {
        let labeler = Labeler {
            split,
            wnids: &wnid_index,
            classes: classes.len(),
            class_wnids: &class_wnids,
            devkit: devkit.as_ref(),
            val_wnids: inputs.val_wnids.as_ref(),
        };
        let (s, gathered) = process_split(cfg, split, input, &labeler, progress)?;
        match &mut record {
            Some(record) => record.add_split(split, gathered),
            None => {
                if let Some(st) = write_split_tables(&cfg.out, split, &gathered)? {
                    summary.stats = Some(st);
                }
                // Each split is recorded as soon as it is complete.
                record_splits(&cfg.out, classes.len(), vec![(split, gathered.manifest)])?;
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

/// What a worker made of one member.
enum Outcome {
    Image {
        label: i64,
        /// The pixels (statistics are taken from them).
        image: Vec<u8>,
        /// What the shard stores when it is not the pixels (a JPEG stream).
        encoded: Option<Vec<u8>>,
        color: ImageColorSums,
        /// What the decoder warned about, when it did.
        warning: Option<String>,
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
    let mut dec = Decoder256::with_options(DecodeOptions {
        filter: cfg.filter,
        jpeg_scaling: cfg.jpeg_scaling,
        max_pixels: cfg.max_pixels,
    });
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
                        Ok(decoded) => {
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
                                    warning: decoded.warning,
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
fn encode(encoding: Encoding, image: &[u8]) -> Result<Option<Vec<u8>>, JpegError> {
    match encoding {
        Encoding::Raw => Ok(None),
        Encoding::Jpeg { .. } => {
            let mut out = Vec::with_capacity(IMAGE_BYTES / 6);
            encoding.encode(image, decode::SIDE, &mut out)?;
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
            None => name.ends_with(TMP_SUFFIX),
            Some(p) => shards::parse_shard_tmp_file_name(&name).is_some_and(|id| p.owns_shard(id)),
        };
        if stale {
            std::fs::remove_file(e.path()).map_err(|err| PreprocessError::io(e.path(), err))?;
        } else if let Some(id) = shards::parse_shard_file_name(&name) {
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
    let dir = DatasetDir::new(&cfg.out).split(split);
    let filter = ShardFilter {
        done: scan_split_dir(&dir, cfg.part)?,
        part: cfg.part,
        images_per_shard: cfg.images_per_shard,
        open_shards: cfg.open_shards,
    };
    let with_stats = split == Split::Train;
    let (total_bytes, total_images) = input_totals(input, split)?;
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
            .map_err(|_| PreprocessError::ReaderPanic)
            .and_then(|r| r);
        (written, reader_result)
    });
    let (stop_kind, open, written_count) = written?;
    close_open_shards(stop_kind, open, reader_result, &mut finished)?;

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

/// What the progress of a split counts to: the bytes of its files, or the
/// number of its images.
fn input_totals(
    input: &SplitInput,
    split: Split,
) -> Result<(Option<u64>, Option<u64>), PreprocessError> {
    let size = |files: &[PathBuf]| {
        files
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
    };
    Ok(match input {
        SplitInput::Tar(p) => (Some(size(std::slice::from_ref(p))), None),
        SplitInput::Dir(d) => (None, Some(count_dir_members(d, split == Split::Train)?)),
        SplitInput::KaggleZip { .. } => (None, None),
        SplitInput::HfTars(files) => (Some(size(files)), None),
        SplitInput::HfParquet(files) => (None, Some(crate::hf_parquet::count_rows(files)?)),
    })
}

/// Ends the shards still open when the writer stopped: finishes them when
/// the input ended, removes them when the run was stopped or the reader
/// failed (completed shards stay), and leaves them as they are after a
/// halt, as an abrupt kill would.
fn close_open_shards(
    stop: Stop,
    open: BTreeMap<u64, PipelineShard>,
    reader_result: Result<(), PreprocessError>,
    finished: &mut FinishedShards,
) -> Result<(), PreprocessError> {
    match stop {
        Stop::Halted => {
            // Dropping the writers would remove their temporary files.
            std::mem::forget(open);
            return Err(PreprocessError::Interrupted);
        }
        Stop::Cancelled => {
            remove_open(open);
            return Err(PreprocessError::Interrupted);
        }
        Stop::Finished => {}
    }
    if let Err(e) = reader_result {
        remove_open(open);
        return Err(e);
    }
    for (id, w) in open {
        finished.add(id, w.finish()?);
    }
    Ok(())
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
                    let mut closing = std::mem::take(&mut open).into_iter();
                    while let Some((id, w)) = closing.next() {
                        finished.add(id, w.finish()?);
                        finished_shards += 1;
                        if cfg.halt_after_shards.is_some_and(|h| finished_shards >= h) {
                            // The rest stay unfinished, as after a kill.
                            return Ok((Stop::Halted, closing.collect(), written));
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
                        warning,
                    } => {
                        let stored = encoded.as_deref().unwrap_or(&image);
                        let shard = open_shard(&mut open, dir, id, cfg, with_stats)?;
                        shard.push_image(&image, stored, label, &d.name, &color)?;
                        if let Some(warning) = warning {
                            shard.push_warning(&d.name, &warning);
                        }
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
            return Err(PreprocessError::OutOfOrder(pending.len()));
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
