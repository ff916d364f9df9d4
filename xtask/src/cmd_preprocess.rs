//! `cargo xtask preprocess`: ImageNet (the three files, extracted trees, or
//! Kaggle's and Hugging Face's layouts with --from) to
//! 256x256 HDF5 shards, with progress bars; alone or as one part of several
//! (`--part I/N`, or a Slurm array task's environment), and `--finish`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use preprocess::{
    FinishSummary, JpegScaling, NoProgress, Part, PartSummary, PreprocessConfig, ProgressSink,
    ResizeFilter, Split, SplitSummary, Summary, DEFAULT_IMAGES_PER_SHARD, DEFAULT_OPEN_SHARDS,
    DEFAULT_WORKERS,
};
use shards::Encoding;

/// Convert ImageNet into sharded 256x256 HDF5 (shorter side to 256, central
/// crop, RGB). Each split can be converted alone; val needs the devkit.
/// Interrupted runs resume: run the same command again. Several machines
/// can share the work: see --part.
#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// ImageNet in any layout it is downloaded in, the layout found from the
    /// paths (the first line of output names it): the official files (or a
    /// directory holding them), the extracted tree (a directory with train/
    /// and val/), Kaggle's ImageNet Object Localization Challenge (its
    /// directory, or the zip as downloaded), or Hugging Face imagenet-1k
    /// (a directory with train_images_<k>.tar.gz or train-*.parquet files,
    /// directly or under data/, or the files themselves). Give it once or
    /// more, instead of --train-tar, --train-dir, --val-tar and --val-dir.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["train_tar", "train_dir", "val_tar", "val_dir"])]
    pub from: Vec<PathBuf>,
    /// ILSVRC2012_img_train.tar: outer tar of 1000 per-class tars (streamed,
    /// never extracted).
    #[arg(long, value_name = "TAR", conflicts_with = "train_dir")]
    pub train_tar: Option<PathBuf>,
    /// Extracted train tree instead of the tar: DIR/<wnid>/*.JPEG.
    #[arg(long, value_name = "DIR")]
    pub train_dir: Option<PathBuf>,
    /// ILSVRC2012_img_val.tar: 50,000 flat JPEGs (needs --devkit).
    #[arg(long, value_name = "TAR", conflicts_with = "val_dir")]
    pub val_tar: Option<PathBuf>,
    /// Extracted val directory instead of the tar: DIR/ILSVRC2012_val_*.JPEG
    /// (needs --devkit).
    #[arg(long, value_name = "DIR")]
    pub val_dir: Option<PathBuf>,
    /// ILSVRC2012_devkit_t12.tar.gz: the class list (sorted leaf WNIDs) and
    /// the val ground truth. Without it the classes are those the --from
    /// layout ships (Kaggle's LOC_synset_mapping.txt, Hugging Face's
    /// classes.py or the ILSVRC-2012 list), or the train input's WNIDs,
    /// sorted.
    #[arg(long, value_name = "TAR_GZ")]
    pub devkit: Option<PathBuf>,
    /// Output directory (layout in README.md). It must be empty or hold the
    /// same dataset (then the run resumes).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Convert only part I of N (0 <= I < N), e.g. on one node of N sharing
    /// --out: the shards whose id mod N is I, the same files a single run
    /// writes. Every part takes the same inputs and options. The part that
    /// completes last writes classes.tsv, stats.h5 and manifest.json of the
    /// whole dataset (or run --finish). A part run again resumes. Without
    /// this flag, a Slurm array task's SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT give the part when set (I = ID -
    /// SLURM_ARRAY_TASK_MIN); --part wins over them.
    #[arg(long, value_name = "I/N")]
    pub part: Option<Part>,
    /// Only write classes.tsv, stats.h5 and manifest.json of a dataset
    /// converted in parts (--part), once all parts are complete; refused,
    /// naming them, while some are not. Needs only --out.
    #[arg(long, conflicts_with_all = ["part", "from", "train_tar", "train_dir", "val_tar", "val_dir", "devkit"])]
    pub finish: bool,
    /// Most images per shard file.
    #[arg(long, default_value_t = DEFAULT_IMAGES_PER_SHARD)]
    pub images_per_shard: usize,
    /// Shards written at the same time: each run of open_shards x
    /// images_per_shard consecutive inputs (the tars are ordered by class) is
    /// dealt round-robin over this many shards, so every shard mixes classes.
    /// Memory grows by about 2 MB per open shard.
    #[arg(long, default_value_t = DEFAULT_OPEN_SHARDS)]
    pub open_shards: usize,
    /// Decode/resize threads (0 = all cores).
    #[arg(long, default_value_t = DEFAULT_WORKERS)]
    pub workers: usize,
    /// Resampling filter of the shorter-side-to-256 resize (both antialias).
    #[arg(long, value_enum, default_value_t = FilterArg::Lanczos3)]
    pub filter: FilterArg,
    /// How JPEGs are decoded before the resize: `draft` lets libjpeg-turbo
    /// decode photos with a shorter side of 512 or more at 1/2, 1/4 or 1/8
    /// size in the DCT domain, never below what the resize to 256 needs
    /// (Pillow's Image.draft; 1.45x faster on 600-2000 px photos, and the
    /// same output below 512 px); `full` decodes every JPEG at full size.
    #[arg(long, value_enum, default_value_t = JpegScalingArg::Draft)]
    pub jpeg_scaling: JpegScalingArg,
    /// The most pixels (width x height) an input image may declare: larger
    /// ones are skipped from their header, before any pixel buffer is
    /// allocated, and listed in skipped.tsv with their size (decompression
    /// bombs: a few hundred bytes claiming gigapixels). The default is
    /// Pillow's limit, so the same files pass as with Pillow. Recorded in
    /// dataset.json: a resume must give the same.
    #[arg(long, value_name = "PIXELS", default_value_t = decode::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// How shards store each 256x256 image: `raw` pixels (196,608 bytes,
    /// no decoding when read; the default) or `jpeg` re-encoded at --quality
    /// (several times smaller; the loader decodes it in its worker threads).
    /// Readers find out by themselves which one a directory holds.
    #[arg(long, value_enum, default_value_t = EncodingArg::Raw)]
    pub encoding: EncodingArg,
    /// JPEG quality 1-100 for --encoding jpeg (4:2:0 chroma, libjpeg-turbo).
    #[arg(long, default_value_t = shards::DEFAULT_JPEG_QUALITY,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// No progress bars (for logs).
    #[arg(long)]
    pub quiet: bool,
}

/// `--encoding` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EncodingArg {
    /// Uncompressed pixels.
    Raw,
    /// Baseline JPEG at --quality.
    Jpeg,
}

/// `--jpeg-scaling` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JpegScalingArg {
    /// DCT-domain reduction of large photos, as far as the resize allows.
    Draft,
    /// Full-size decoding.
    Full,
}

impl From<JpegScalingArg> for JpegScaling {
    fn from(s: JpegScalingArg) -> Self {
        match s {
            JpegScalingArg::Draft => JpegScaling::Draft,
            JpegScalingArg::Full => JpegScaling::Full,
        }
    }
}

/// `--filter` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FilterArg {
    /// Catmull-Rom cubic: fewer taps than Lanczos3, slightly softer.
    CatmullRom,
    /// Lanczos3: Pillow's LANCZOS (matches the Pillow pipeline to a mean 0.2/255).
    Lanczos3,
}

impl From<FilterArg> for ResizeFilter {
    fn from(f: FilterArg) -> Self {
        match f {
            FilterArg::CatmullRom => ResizeFilter::CatmullRom,
            FilterArg::Lanczos3 => ResizeFilter::Lanczos3,
        }
    }
}

impl PreprocessArgs {
    /// The library config these flags (and a Slurm array task's
    /// environment, when --part is not given) describe.
    pub fn config(&self) -> anyhow::Result<PreprocessConfig> {
        let mut cfg = PreprocessConfig::new(&self.out);
        cfg.part = Part::explicit_or_slurm(self.part)?;
        cfg.from = self.from.clone();
        cfg.train_tar = self.train_tar.clone();
        cfg.train_dir = self.train_dir.clone();
        cfg.val_tar = self.val_tar.clone();
        cfg.val_dir = self.val_dir.clone();
        cfg.devkit = self.devkit.clone();
        cfg.images_per_shard = self.images_per_shard;
        cfg.open_shards = self.open_shards;
        cfg.workers = self.workers;
        cfg.filter = self.filter.into();
        cfg.jpeg_scaling = self.jpeg_scaling.into();
        cfg.max_pixels = self.max_pixels;
        cfg.encoding = match self.encoding {
            EncodingArg::Raw => Encoding::Raw,
            EncodingArg::Jpeg => Encoding::Jpeg {
                quality: self.quality,
            },
        };
        Ok(cfg)
    }
}

/// Progress bars: bytes of the tar read (ETA) or files of a directory.
#[derive(Default)]
pub struct BarProgress {
    bar: Mutex<Option<(ProgressBar, bool)>>,
}

impl ProgressSink for BarProgress {
    fn start_split(&self, split: Split, total_bytes: Option<u64>, total_images: Option<u64>) {
        let (bar, by_bytes) = match (total_bytes, total_images) {
            (Some(b), _) => {
                let bar = ProgressBar::new(b);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>5} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
                    )
                    .expect("template"),
                );
                (bar, true)
            }
            (None, Some(n)) => {
                let bar = ProgressBar::new(n);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>5} [{elapsed_precise}] {wide_bar} {pos}/{len} files {msg} ETA {eta}",
                    )
                    .expect("template"),
                );
                (bar, false)
            }
            (None, None) => (ProgressBar::no_length(), false),
        };
        bar.set_prefix(split.name());
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.bar.lock().expect("progress lock") = Some((bar, by_bytes));
    }

    fn advance(&self, inputs_done: u64, bytes_read: u64) {
        if let Some((bar, by_bytes)) = &*self.bar.lock().expect("progress lock") {
            bar.set_position(if *by_bytes { bytes_read } else { inputs_done });
            let secs = bar.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{inputs_done} images, {:.0} images/s",
                inputs_done as f64 / secs
            ));
        }
    }

    fn finish_split(&self, s: &SplitSummary) {
        if let Some((bar, _)) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
        eprintln!("{}", split_line(s));
    }
}

/// One split's result: `train: 10 images in 4 shards, ...`.
fn split_line(s: &SplitSummary) -> String {
    let (name, skipped_in) = match s.part {
        Some(p) => (
            format!("{} (part {p})", s.split.name()),
            "listed in parts/".to_string(),
        ),
        None => (
            s.split.name().to_string(),
            format!("see {}/skipped.tsv", s.split.name()),
        ),
    };
    format!(
        "{name}: {} images in {} shards, {} skipped ({skipped_in}), {} written in {:.1} s",
        s.images, s.shards, s.skipped, s.written_this_run, s.seconds
    )
}

/// The last line of a run: written, skipped, images/s; for a part, whether
/// it finished the dataset or which parts it waits for.
pub fn summary_line(s: &Summary) -> String {
    let (prefix, scope) = match &s.part {
        Some(p) => (format!("part {}: ", p.part), "in this part's shards"),
        None => (String::new(), "in the output"),
    };
    let line = format!(
        "{prefix}written {} images, skipped {}, {:.1} images/s ({} images {scope}, {:.1} s)",
        s.written_this_run(),
        s.skipped(),
        s.images_per_second(),
        s.images(),
        s.seconds
    );
    match &s.part {
        None => line,
        Some(PartSummary {
            finished: Some(f), ..
        }) => format!("{line}; {}", finished_line(f)),
        Some(PartSummary { waiting_for, .. }) => {
            let parts: Vec<String> = waiting_for.iter().map(|m| m.part.to_string()).collect();
            format!(
                "{line}; waiting for part {} (the last part to complete finishes the dataset)",
                parts.join(", ")
            )
        }
    }
}

/// What the finish of a dataset converted in parts wrote.
fn finished_line(f: &FinishSummary) -> String {
    let images: u64 = f.splits.iter().map(|s| s.images).sum();
    let skipped: u64 = f.splits.iter().map(|s| s.skipped).sum();
    format!(
        "finished the dataset of {} parts: {images} images, {skipped} skipped, classes.tsv, stats.h5 and manifest.json written",
        f.parts
    )
}

/// The whole dataset's lines after a finish: each split, the statistics.
fn report_finish(f: &FinishSummary) {
    for s in &f.splits {
        eprintln!(
            "{}: {} images in {} shards, {} skipped (see {}/skipped.tsv)",
            s.split.name(),
            s.images,
            s.shards,
            s.skipped,
            s.split.name()
        );
    }
    if let Some(st) = &f.stats {
        report_stats(st);
    }
}

fn report_stats(st: &loader::Stats) {
    eprintln!(
        "train statistics: {} images, RGB mean {:.2} {:.2} {:.2}, eigenvalues {:.5} {:.5} {:.5} (stats.h5)",
        st.count,
        st.rgb_mean[0],
        st.rgb_mean[1],
        st.rgb_mean[2],
        st.eigvals[0],
        st.eigvals[1],
        st.eigvals[2]
    );
}

/// The first line of a run with --from: the layout found and its splits.
pub fn layout_line(layout: &preprocess::Layout, from: &[PathBuf], devkit: bool) -> String {
    let paths: Vec<String> = from.iter().map(|p| p.display().to_string()).collect();
    let splits: Vec<&str> = [
        ("train", layout.train.is_some()),
        ("val", layout.val.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    let classes = match (devkit || layout.devkit.is_some(), &layout.classes) {
        (true, _) => "class names from the devkit",
        (false, Some(_)) => "class names from the layout",
        (false, None) => "classes from the train input",
    };
    format!(
        "layout: {} ({}) in {}: {}; {classes}",
        layout.kind,
        layout.kind.name(),
        paths.join(", "),
        splits.join(" and ")
    )
}

pub fn run_preprocess(args: PreprocessArgs) -> anyhow::Result<()> {
    if args.finish {
        let f = preprocess::finish(&args.out)
            .with_context(|| format!("finishing {}", args.out.display()))?;
        report_finish(&f);
        println!("{}", finished_line(&f));
        return Ok(());
    }
    if !args.from.is_empty() {
        let layout = preprocess::detect_layout(&args.from).context("reading --from")?;
        println!(
            "{}",
            layout_line(&layout, &args.from, args.devkit.is_some())
        );
    }
    let mut cfg = args.config()?;
    if let (Some(part), None) = (cfg.part, args.part) {
        eprintln!(
            "part {part}, from the Slurm array environment (SLURM_ARRAY_TASK_ID {})",
            std::env::var(preprocess::SLURM_ARRAY_TASK_ID).unwrap_or_default()
        );
    }
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second Ctrl-C kills at once (default behaviour is gone, so exit).
        ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping: completed shards are kept; run the same command to resume");
        })
        .context("installing the Ctrl-C handler")?;
    }
    cfg.cancel = Some(cancel);
    let bars = BarProgress::default();
    let progress: &dyn ProgressSink = if args.quiet { &NoProgress } else { &bars };
    let summary = preprocess::run(&cfg, progress).with_context(|| match cfg.part {
        Some(p) => format!("preprocessing part {p} into {}", cfg.out.display()),
        None => format!("preprocessing into {}", cfg.out.display()),
    })?;
    if let Some(st) = &summary.stats {
        report_stats(st);
    }
    if let Some(f) = summary.part.as_ref().and_then(|p| p.finished.as_ref()) {
        report_finish(f);
    }
    println!("{}", summary_line(&summary));
    Ok(())
}
