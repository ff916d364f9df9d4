//! TensorBoard event files: a run's scalars and images in
//! `RUN_DIR/tensorboard/`, so that `tensorboard --logdir runs/` shows runs
//! side by side.
//!
//! The files are TensorFlow's format: records framed with masked CRC-32C
//! ([`record`]), each a `tensorflow.Event` protocol buffer encoded by
//! `prost` ([`proto`]). What a run writes (see [`Trainer`](crate::Trainer)):
//!
//! - every [`TrainConfig::tensorboard_every`](crate::TrainConfig) steps,
//!   under `train/`: the step's `loss` and `top1_error` (percent, over the
//!   global batch), the `learning_rate`, and the epoch's running
//!   `images_per_sec` and `data_wait_share`;
//! - every epoch, at the epoch's last step, under `epoch/`: each column of
//!   `metrics.csv` by its name (`epoch/val_top1_error`, ...), and the conv1
//!   kernels as the image `conv1/filters` (the picture of `show filters`).
//!
//! A resumed run first cuts the files back to the checkpoint's step
//! ([`prune_after`]): steps written after it by the run that stopped are
//! dropped, and the resumed run writes them again into a new file, so
//! every step appears once.

mod proto;
pub mod record;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::atomic::write_atomic;
use crate::error::{io_err, Result, TrainerError};
use crate::events::StepReport;
use crate::figures::canvas::{encode_png, RgbImage};
use crate::metrics::EpochMetrics;
use proto::{Event, Image, Summary, SummaryValue, Value, What};

/// The run directory's subdirectory that holds the event files.
pub const TENSORBOARD_DIR: &str = "tensorboard";

/// How every event file's name begins (TensorBoard reads only these).
pub const FILE_PREFIX: &str = "events.out.tfevents.";

/// The event file format's version string, the first event of each file.
const FILE_VERSION: &str = "brain.Event:2";

/// Written events reach the disk at least this often (and at every
/// [`EventWriter::flush`]), so that a live TensorBoard follows the run.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// `RUN_DIR/tensorboard`.
pub fn tensorboard_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(TENSORBOARD_DIR)
}

/// Appends events to a new event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    last_flush: Instant,
    record: Vec<u8>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, named as
    /// TensorFlow names them (`events.out.tfevents.<seconds>.<host>.<pid>.<n>`,
    /// so that names sort in the order the files were made), and writes
    /// the file-version event.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().replace(['/', '.'], "_"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let pid = std::process::id();
        let (path, file) = (0u32..)
            .find_map(|n| {
                let path = dir.join(format!("{FILE_PREFIX}{secs:010}.{host}.{pid}.{n}"));
                let file = File::options().write(true).create_new(true).open(&path);
                match file {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    other => Some((path, other)),
                }
            })
            .expect("an unused file number");
        let file = file.map_err(io_err(&path))?;
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
            last_flush: Instant::now(),
            record: Vec::new(),
        };
        writer.write(0, What::FileVersion(FILE_VERSION.into()))?;
        writer.flush()?;
        Ok(writer)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event holding the scalars `(tag, value)` at `step` (stored as
    /// 32-bit floats, as TensorBoard's scalars are).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|&(tag, v)| SummaryValue {
                tag: tag.into(),
                value: Some(Value::SimpleValue(v as f32)),
            })
            .collect();
        self.write(step, What::Summary(Summary { value }))
    }

    /// One event holding `image` (encoded as PNG) under `tag` at `step`.
    pub fn image(&mut self, step: u64, tag: &str, image: &RgbImage) -> Result<()> {
        let png = encode_png(image).map_err(|source| TrainerError::Plot {
            path: self.path.clone(),
            source,
        })?;
        let value = vec![SummaryValue {
            tag: tag.into(),
            value: Some(Value::Image(Image {
                height: image.height as i32,
                width: image.width as i32,
                colorspace: 3,
                encoded_image_string: png,
            })),
        }];
        self.write(step, What::Summary(Summary { value }))
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        self.out.flush().map_err(io_err(&self.path))
    }

    fn write(&mut self, step: u64, what: What) -> Result<()> {
        let wall_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let event = Event {
            wall_time,
            step: step as i64,
            what: Some(what),
        };
        self.record.clear();
        event
            .encode(&mut self.record)
            .expect("a Vec grows as needed");
        record::write_record(&mut self.out, &self.record).map_err(io_err(&self.path))?;
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }
}

/// The event files of a training run (rank 0): the tags, and when each
/// series is written.
pub(crate) struct RunEvents {
    writer: EventWriter,
    every: u64,
}

impl RunEvents {
    /// Cuts the run's event files back to `step` (the checkpoint resumed
    /// from, 0 for a new run) and opens a new file. `None` when `every`
    /// is 0 (no event files).
    pub(crate) fn open(run_dir: &Path, step: u64, every: u64) -> Result<Option<Self>> {
        if every == 0 {
            return Ok(None);
        }
        let dir = tensorboard_dir(run_dir);
        prune_after(&dir, step)?;
        Ok(Some(Self {
            writer: EventWriter::create(&dir)?,
            every,
        }))
    }

    /// The step's scalars under `train/`, every `every` steps.
    pub(crate) fn step(&mut self, r: &StepReport) -> Result<()> {
        if !r.step.is_multiple_of(self.every) {
            return Ok(());
        }
        self.writer.scalars(
            r.step,
            &[
                ("train/loss", r.loss),
                ("train/top1_error", r.top1_error),
                ("train/learning_rate", r.lr),
                ("train/images_per_sec", r.images_per_sec),
                ("train/data_wait_share", r.data_wait_share),
            ],
        )
    }

    /// The epoch's `metrics.csv` row under `epoch/` and the conv1 kernels,
    /// at the epoch's last step; then everything is flushed.
    pub(crate) fn epoch(&mut self, m: &EpochMetrics, filters: &RgbImage) -> Result<()> {
        let tags: Vec<(String, f64)> = m
            .columns()
            .iter()
            .filter(|(name, _)| *name != "step")
            .map(|(name, v)| (format!("epoch/{name}"), *v))
            .collect();
        let values: Vec<(&str, f64)> = tags.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        self.writer.scalars(m.step, &values)?;
        self.writer.image(m.step, "conv1/filters", filters)?;
        self.writer.flush()
    }

    /// Writes what is buffered (before a checkpoint, so that a resume
    /// from it finds every step up to it).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.writer.flush()
    }
}

/// The event files of `dir`, in name order (the order they were made).
fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_name().to_string_lossy().starts_with(FILE_PREFIX) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn decode_event(path: &Path, index: usize, data: &[u8]) -> Result<Event> {
    Event::decode(data).map_err(|source| TrainerError::EventRecord {
        path: path.to_path_buf(),
        index,
        source,
    })
}

/// What [`prune_after`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events dropped (steps after the kept one).
    pub events: usize,
    /// Files rewritten without them.
    pub files_rewritten: usize,
    /// Files removed (nothing but the version event was left).
    pub files_removed: usize,
    /// Files whose end was cut short or damaged (a process killed while
    /// writing): read up to the damage.
    pub files_damaged: usize,
}

/// Cuts the event files of `dir` back to `step`: every event of a later
/// step is dropped (each file rewritten atomically), files left with only
/// their version event are removed, and a damaged tail is cut off. What a
/// resumed run calls with its checkpoint's step, a new run with 0.
pub fn prune_after(dir: &Path, step: u64) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    for path in event_files(dir)? {
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let records = record::read_records(&bytes);
        let mut kept = Vec::with_capacity(bytes.len());
        let mut summaries = 0usize;
        let mut dropped = 0usize;
        for (i, data) in records.records.iter().enumerate() {
            let event = decode_event(&path, i, data)?;
            let is_summary = matches!(event.what, Some(What::Summary(_)));
            if is_summary && event.step > step as i64 {
                dropped += 1;
                continue;
            }
            summaries += usize::from(is_summary);
            record::write_record(&mut kept, data).expect("writing to a Vec");
        }
        pruned.events += dropped;
        pruned.files_damaged += usize::from(records.damage.is_some());
        if summaries == 0 {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            pruned.files_removed += 1;
        } else if kept.len() != bytes.len() {
            write_atomic(&path, &kept)?;
            pruned.files_rewritten += 1;
        }
    }
    Ok(pruned)
}

/// A scalar read back from event files.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalarPoint {
    /// Its series.
    pub tag: String,
    /// Its step.
    pub step: u64,
    /// Its value.
    pub value: f32,
}

/// An image read back from event files.
#[derive(Clone, Debug, PartialEq)]
pub struct ImagePoint {
    /// Its series.
    pub tag: String,
    /// Its step.
    pub step: u64,
    /// Width and height in pixels.
    pub size: (u32, u32),
    /// The encoded image (PNG).
    pub encoded: Vec<u8>,
}

/// Everything of a directory's event files, in the order written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventLog {
    /// The event files read, in name order.
    pub files: Vec<PathBuf>,
    /// Every scalar.
    pub scalars: Vec<ScalarPoint>,
    /// Every image.
    pub images: Vec<ImagePoint>,
    /// Files whose end is cut short or damaged, and how (what precedes
    /// the damage is read).
    pub damaged: Vec<(PathBuf, &'static str)>,
}

/// Reads the event files of `dir` (a run's [`tensorboard_dir`]).
pub fn read_events(dir: &Path) -> Result<EventLog> {
    let mut log = EventLog::default();
    for path in event_files(dir)? {
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let records = record::read_records(&bytes);
        if let Some(damage) = records.damage {
            log.damaged.push((path.clone(), damage));
        }
        for (i, data) in records.records.iter().enumerate() {
            let event = decode_event(&path, i, data)?;
            let Some(What::Summary(summary)) = event.what else {
                continue;
            };
            let step = u64::try_from(event.step).unwrap_or(0);
            for v in summary.value {
                match v.value {
                    Some(Value::SimpleValue(value)) => log.scalars.push(ScalarPoint {
                        tag: v.tag,
                        step,
                        value,
                    }),
                    Some(Value::Image(img)) => log.images.push(ImagePoint {
                        tag: v.tag,
                        step,
                        size: (img.width.max(0) as u32, img.height.max(0) as u32),
                        encoded: img.encoded_image_string,
                    }),
                    None => {}
                }
            }
        }
        log.files.push(path);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(log: &EventLog, tag: &str) -> Vec<u64> {
        log.scalars
            .iter()
            .filter(|s| s.tag == tag)
            .map(|s| s.step)
            .collect()
    }

    #[test]
    fn scalars_and_images_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(1, &[("train/loss", 6.9), ("train/top1_error", 99.5)])
            .unwrap();
        w.scalars(2, &[("train/loss", 6.8)]).unwrap();
        let img = RgbImage::filled(3, 2, [10, 20, 30]);
        w.image(2, "conv1/filters", &img).unwrap();
        w.flush().unwrap();
        let log = read_events(dir.path()).unwrap();
        assert_eq!(log.files, [w.path().to_path_buf()]);
        assert_eq!(steps(&log, "train/loss"), [1, 2]);
        assert_eq!(log.scalars[1].value, 99.5);
        assert_eq!(log.scalars[2].value, 6.8f64 as f32);
        assert_eq!(log.images.len(), 1);
        assert_eq!(log.images[0].size, (3, 2));
        assert_eq!(&log.images[0].encoded[1..4], b"PNG");
        assert!(log.damaged.is_empty());
    }

    #[test]
    fn pruning_keeps_each_step_once_across_a_stop_and_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        // A run that wrote steps 1..=7, checkpointed at 4, and was killed
        // in the middle of a record.
        let mut first = EventWriter::create(dir.path()).unwrap();
        for s in 1..=7 {
            first.scalars(s, &[("train/loss", s as f64)]).unwrap();
        }
        first.flush().unwrap();
        let path = first.path().to_path_buf();
        drop(first);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();

        let pruned = prune_after(dir.path(), 4).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                events: 3,
                files_rewritten: 1,
                files_removed: 0,
                files_damaged: 1,
            }
        );
        let mut second = EventWriter::create(dir.path()).unwrap();
        for s in 5..=8 {
            second.scalars(s, &[("train/loss", s as f64)]).unwrap();
        }
        second.flush().unwrap();
        let log = read_events(dir.path()).unwrap();
        assert_eq!(log.files.len(), 2);
        assert_eq!(steps(&log, "train/loss"), (1..=8).collect::<Vec<_>>());
        assert!(log.damaged.is_empty());

        // A new run in the same directory starts from nothing.
        let pruned = prune_after(dir.path(), 0).unwrap();
        assert_eq!(pruned.files_removed, 2);
        assert!(read_events(dir.path()).unwrap().files.is_empty());
    }

    #[test]
    fn a_record_that_is_not_an_event_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{FILE_PREFIX}0.host.1.0"));
        let mut bytes = Vec::new();
        record::write_record(&mut bytes, &[0xff; 9]).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let err = read_events(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("record 0"), "{err}");
    }
}
