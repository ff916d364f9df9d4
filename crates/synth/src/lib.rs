//! A synthetic dataset in the exact ImageNet distribution layout, for tests
//! and the quick start.
//!
//! [`generate`] writes the three files ImageNet users have:
//! - `ILSVRC2012_img_train.tar`: an outer tar of per-class inner tars
//!   `nXXXXXXXX.tar`, each holding `nXXXXXXXX_N.JPEG` files (inner tars in
//!   ILSVRC2012_ID order, which is not sorted-WNID order);
//! - `ILSVRC2012_img_val.tar`: flat `ILSVRC2012_val_00000001.JPEG` ...;
//! - `ILSVRC2012_devkit_t12.tar.gz`: `ILSVRC2012_devkit_t12/data/meta.mat`
//!   (MATLAB v5 struct array `synsets` with leaf and internal synsets) and
//!   `.../data/ILSVRC2012_validation_ground_truth.txt`.
//!
//! [`generate_layout`] writes the same photos in Kaggle's and Hugging
//! Face's layouts too.
//!
//! [`generate_trees`] writes the extracted layout (`train/<wnid>/*.JPEG`,
//! `val/*.JPEG`, plus the devkit) with the same files for the same config.
//!
//! Each class is one object (shape x hue x texture, and background style
//! for more than 288 classes) drawn at a random position, size and angle
//! over a noisy gradient with distractors: a CNN learns it, memorising
//! pixels does not suffice. ILSVRC2012_IDs are deliberately not in
//! sorted-WNID order, so `ILSVRC2012_ID - 1` is not the class index.
//!
//! With [`SynthConfig::plant_odd_files`], each split also holds one file of
//! every [`OddKind`]: grayscale, CMYK and YCCK (Adobe) JPEGs, a progressive
//! JPEG, a PNG named `.JPEG` (all decodable, same picture content) and four
//! broken files (truncated JPEG, empty, HTML text, random bytes).

mod devkit_files;
mod draw;
mod encode;
mod layouts;
mod plan;

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use draw::DISTINCT_APPEARANCES;
pub use encode::{rgb_to_cmyk, rgb_to_luma};
pub use layouts::{
    generate_layout, generate_layout_with, Layout, LayoutOptions, SynthLayout, HF_TRAIN_PER_FILE,
    KAGGLE_ZIP, PARQUET_ROWS_PER_GROUP,
};
use plan::{FilePlan, Plan};

/// File name of the train tar.
pub const TRAIN_TAR: &str = "ILSVRC2012_img_train.tar";
/// File name of the validation tar.
pub const VAL_TAR: &str = "ILSVRC2012_img_val.tar";
/// File name of the devkit.
pub const DEVKIT_TAR_GZ: &str = "ILSVRC2012_devkit_t12.tar.gz";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    /// Number of (leaf) classes.
    pub classes: usize,
    /// Train images per class.
    pub train_per_class: usize,
    /// Validation images in total (labels balanced across classes).
    pub val_images: usize,
    /// Smallest image side in pixels (width and height are drawn
    /// independently from `min_side..=max_side`: varied aspect ratios).
    pub min_side: u32,
    /// Largest image side in pixels.
    pub max_side: u32,
    /// Seed: the same config writes byte-identical files.
    pub seed: u64,
    /// Plant one file of every [`OddKind`] in the train and the val split.
    pub plant_odd_files: bool,
    /// Internal (non-leaf) synsets in `meta.mat` besides the leaves: the
    /// WordNet root `n00001740` plus groups of leaves (at most one group
    /// per leaf).
    pub non_leaf_synsets: usize,
    /// JPEG quality (1-100).
    pub jpeg_quality: u8,
    /// Store `meta.mat`'s variable zlib-compressed (`miCOMPRESSED`).
    pub compress_meta: bool,
}

impl Default for SynthConfig {
    /// A small set for tests: 5 classes x 8 train images, 20 val images,
    /// 96-224 px, no odd files.
    fn default() -> Self {
        SynthConfig {
            classes: 5,
            train_per_class: 8,
            val_images: 20,
            min_side: 96,
            max_side: 224,
            seed: 0,
            plant_odd_files: false,
            non_leaf_synsets: 4,
            jpeg_quality: 90,
            compress_meta: true,
        }
    }
}

impl SynthConfig {
    /// The quick-start preset: 10 classes x 260 train images, 500 val
    /// images, 300-500 px, odd files planted.
    pub fn quickstart() -> Self {
        SynthConfig {
            classes: 10,
            train_per_class: 260,
            val_images: 500,
            min_side: 300,
            max_side: 500,
            seed: 2012,
            plant_odd_files: true,
            non_leaf_synsets: 6,
            jpeg_quality: 90,
            compress_meta: true,
        }
    }

    fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Config(m));
        if self.classes == 0 {
            return bad("classes must be at least 1".into());
        }
        if self.classes > 9_000_000 {
            return bad("classes must be below 9,000,000 (8-digit WNIDs)".into());
        }
        if self.train_per_class == 0 {
            return bad("train_per_class must be at least 1".into());
        }
        if self.val_images > 99_999_999 {
            return bad("val_images must fit 8 digits".into());
        }
        if self.min_side < 8 || self.min_side > self.max_side || self.max_side > 8192 {
            return bad(format!(
                "image sides must satisfy 8 <= min_side <= max_side <= 8192, got {}..{}",
                self.min_side, self.max_side
            ));
        }
        if self.jpeg_quality == 0 || self.jpeg_quality > 100 {
            return bad(format!("jpeg_quality {} not in 1..=100", self.jpeg_quality));
        }
        Ok(())
    }
}

/// The kinds of odd file planted in each split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OddKind {
    /// Single-component (grayscale) baseline JPEG.
    Grayscale,
    /// Four-component CMYK JPEG with an Adobe APP14 marker (transform 0),
    /// inverted values as Adobe writes them; converts back to the picture.
    Cmyk,
    /// Four-component YCCK JPEG (Adobe APP14 transform 2).
    Ycck,
    /// Progressive JPEG (SOF2).
    Progressive,
    /// A PNG file named `.JPEG`.
    PngNamedJpeg,
    /// A JPEG cut inside its frame header: undecodable.
    TruncatedJpeg,
    /// Zero bytes: undecodable.
    Empty,
    /// An HTML error page: undecodable.
    NotAnImage,
    /// Random bytes: undecodable.
    RandomBytes,
}

impl OddKind {
    /// Whether a correct decoder returns the picture (else it must skip and
    /// report the file).
    pub fn is_decodable(self) -> bool {
        matches!(
            self,
            OddKind::Grayscale
                | OddKind::Cmyk
                | OddKind::Ycck
                | OddKind::Progressive
                | OddKind::PngNamedJpeg
        )
    }

    /// Every kind, in planting order.
    pub fn all() -> [OddKind; 9] {
        plan::PLANTED
    }
}

/// What [`generate`] wrote, with the expectations tests need.
#[derive(Debug, Clone)]
pub struct SynthDataset {
    /// `dir/ILSVRC2012_img_train.tar`.
    pub train_tar: PathBuf,
    /// `dir/ILSVRC2012_img_val.tar`.
    pub val_tar: PathBuf,
    /// `dir/ILSVRC2012_devkit_t12.tar.gz`.
    pub devkit: PathBuf,
    /// The dataset's content.
    pub info: SynthInfo,
}

/// What [`generate_trees`] wrote.
#[derive(Debug, Clone)]
pub struct SynthTrees {
    /// `dir/train`, holding `<wnid>/<wnid>_N.JPEG`.
    pub train_dir: PathBuf,
    /// `dir/val`, holding `ILSVRC2012_val_NNNNNNNN.JPEG`.
    pub val_dir: PathBuf,
    /// `dir/ILSVRC2012_devkit_t12.tar.gz`.
    pub devkit: PathBuf,
    /// The dataset's content.
    pub info: SynthInfo,
}

/// The content of a synthetic dataset (same for tars and trees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthInfo {
    /// Leaf WNIDs sorted: the class index is the position.
    pub wnids_sorted: Vec<String>,
    /// Words per class index (as in `meta.mat`).
    pub words: Vec<String>,
    /// ILSVRC2012_ID per class index (not `index + 1`).
    pub ilsvrc_ids: Vec<u32>,
    /// Train files written, broken ones included.
    pub train_count: usize,
    /// Validation files written, broken ones included.
    pub val_count: usize,
    /// Expected class index of each validation file, in file-name order.
    pub val_labels: Vec<usize>,
    /// Every odd file (decodable or not): member name and kind. Names are
    /// unique across splits (train names start with the WNID).
    pub odd: Vec<(String, OddKind)>,
    /// Member names of the undecodable files (a subset of `odd`).
    pub broken: Vec<String>,
}

impl SynthInfo {
    /// Train images a correct preprocessor writes (all but the broken ones).
    pub fn decodable_train_count(&self) -> usize {
        self.train_count - self.broken.iter().filter(|n| !is_val_name(n)).count()
    }

    /// Validation images a correct preprocessor writes.
    pub fn decodable_val_count(&self) -> usize {
        self.val_count - self.broken.iter().filter(|n| is_val_name(n)).count()
    }

    /// Class index of a WNID.
    pub fn class_of_wnid(&self, wnid: &str) -> Option<usize> {
        self.wnids_sorted
            .binary_search_by(|w| w.as_str().cmp(wnid))
            .ok()
    }
}

fn is_val_name(name: &str) -> bool {
    name.starts_with("ILSVRC2012_val_")
}

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// Invalid configuration.
    #[error("invalid synthetic dataset config: {0}")]
    Config(String),
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Encoding a picture as JPEG failed.
    #[error("encoding a picture: {0}")]
    Jpeg(#[from] jpeg_encoder::EncodingError),
    /// Encoding a picture as PNG failed.
    #[error("encoding a picture: {0}")]
    Png(#[from] png::EncodingError),
    /// Writing `meta.mat` failed.
    #[error("writing meta.mat: {0}")]
    Mat(#[from] matv5::MatError),
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files rendered per batch (bounds memory for large sets).
const BATCH: usize = 256;

/// Renders the bytes of `files` on all cores, in order.
fn render_files(files: &[FilePlan], plan: &Plan, quality: u8) -> Result<Vec<Vec<u8>>, SynthError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().max(1));
    let per = files.len().div_ceil(threads.max(1)).max(1);
    let chunks: Vec<Result<Vec<Vec<u8>>, SynthError>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|f| render_one(f, plan, quality))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("render thread panicked"))
            .collect()
    });
    let mut out = Vec::with_capacity(files.len());
    for c in chunks {
        out.extend(c?);
    }
    Ok(out)
}

/// The bytes of a file of `kind` showing the RGB picture `rgb` (`w x h`):
/// how the generator plants odd and broken files, for callers that plant
/// them among other photos (random bytes are drawn from `seed`).
pub fn encode_odd_file(
    rgb: &[u8],
    w: u32,
    h: u32,
    kind: OddKind,
    quality: u8,
    seed: u64,
) -> Result<Vec<u8>, SynthError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    encode::encode_file(rgb, w, h, Some(kind), quality, &mut rng)
}

fn render_one(f: &FilePlan, plan: &Plan, quality: u8) -> Result<Vec<u8>, SynthError> {
    let mut rng = ChaCha8Rng::seed_from_u64(f.seed);
    let rgb = draw::render(plan.appearances[f.class], f.width, f.height, &mut rng);
    encode::encode_file(&rgb, f.width, f.height, f.odd, quality, &mut rng)
}

fn info(plan: &Plan) -> SynthInfo {
    let mut odd = Vec::new();
    for f in plan.train.iter().flatten().chain(plan.val.iter()) {
        if let Some(kind) = f.odd {
            odd.push((f.name.clone(), kind));
        }
    }
    let broken = odd
        .iter()
        .filter(|(_, k)| !k.is_decodable())
        .map(|(n, _)| n.clone())
        .collect();
    SynthInfo {
        wnids_sorted: plan.wnids.clone(),
        words: plan.words.clone(),
        ilsvrc_ids: plan.ilsvrc_ids.clone(),
        train_count: plan.train.iter().map(Vec::len).sum(),
        val_count: plan.val.len(),
        val_labels: plan.val.iter().map(|f| f.class).collect(),
        odd,
        broken,
    }
}

fn create_dir(dir: &Path) -> Result<(), SynthError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))
}

/// Writes the three ImageNet files into `dir` (created if missing;
/// existing files of the same names are replaced).
pub fn generate(dir: &Path, cfg: &SynthConfig) -> Result<SynthDataset, SynthError> {
    let plan = Plan::new(cfg)?;
    create_dir(dir)?;
    let train_tar = dir.join(TRAIN_TAR);
    let val_tar = dir.join(VAL_TAR);
    let devkit = dir.join(DEVKIT_TAR_GZ);

    // Train: outer tar of inner per-class tars, each built in memory.
    {
        let e = io_err(&train_tar);
        let file = std::fs::File::create(&train_tar).map_err(&e)?;
        let mut outer = tar::Builder::new(std::io::BufWriter::new(file));
        for &class in &plan.train_order {
            let mut inner = tar::Builder::new(Vec::new());
            for batch in plan.train[class].chunks(BATCH) {
                let bytes = render_files(batch, &plan, cfg.jpeg_quality)?;
                for (f, data) in batch.iter().zip(bytes) {
                    let h = devkit_files::file_header(&f.name, data.len()).map_err(&e)?;
                    inner.append(&h, data.as_slice()).map_err(&e)?;
                }
            }
            let inner = inner.into_inner().map_err(&e)?;
            let name = format!("{}.tar", plan.wnids[class]);
            let h = devkit_files::file_header(&name, inner.len()).map_err(&e)?;
            outer.append(&h, inner.as_slice()).map_err(&e)?;
        }
        outer.into_inner().map_err(&e)?.flush().map_err(&e)?;
    }

    // Val: flat tar in file-name order.
    {
        let e = io_err(&val_tar);
        let file = std::fs::File::create(&val_tar).map_err(&e)?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(file));
        for batch in plan.val.chunks(BATCH) {
            let bytes = render_files(batch, &plan, cfg.jpeg_quality)?;
            for (f, data) in batch.iter().zip(bytes) {
                let h = devkit_files::file_header(&f.name, data.len()).map_err(&e)?;
                b.append(&h, data.as_slice()).map_err(&e)?;
            }
        }
        b.into_inner().map_err(&e)?.flush().map_err(&e)?;
    }

    devkit_files::write_devkit(&devkit, &plan, cfg.train_per_class, cfg.compress_meta)?;
    Ok(SynthDataset {
        train_tar,
        val_tar,
        devkit,
        info: info(&plan),
    })
}

/// Writes the extracted layout into `dir`: `train/<wnid>/<wnid>_N.JPEG`,
/// `val/ILSVRC2012_val_NNNNNNNN.JPEG` and the devkit tar.gz; the files are
/// byte-identical to those [`generate`] packs for the same config.
pub fn generate_trees(dir: &Path, cfg: &SynthConfig) -> Result<SynthTrees, SynthError> {
    let plan = Plan::new(cfg)?;
    let train_dir = dir.join("train");
    let val_dir = dir.join("val");
    create_dir(&train_dir)?;
    create_dir(&val_dir)?;
    let write = |path: PathBuf, data: &[u8]| std::fs::write(&path, data).map_err(io_err(&path));
    for class in 0..plan.wnids.len() {
        let class_dir = train_dir.join(&plan.wnids[class]);
        create_dir(&class_dir)?;
        for batch in plan.train[class].chunks(BATCH) {
            let bytes = render_files(batch, &plan, cfg.jpeg_quality)?;
            for (f, data) in batch.iter().zip(bytes) {
                write(class_dir.join(&f.name), &data)?;
            }
        }
    }
    for batch in plan.val.chunks(BATCH) {
        let bytes = render_files(batch, &plan, cfg.jpeg_quality)?;
        for (f, data) in batch.iter().zip(bytes) {
            write(val_dir.join(&f.name), &data)?;
        }
    }
    let devkit = dir.join(DEVKIT_TAR_GZ);
    devkit_files::write_devkit(&devkit, &plan, cfg.train_per_class, cfg.compress_meta)?;
    Ok(SynthTrees {
        train_dir,
        val_dir,
        devkit,
        info: info(&plan),
    })
}

impl std::ops::Deref for SynthDataset {
    type Target = SynthInfo;
    /// `ds.val_labels` etc. read the dataset's [`SynthInfo`].
    fn deref(&self) -> &SynthInfo {
        &self.info
    }
}

impl std::ops::Deref for SynthTrees {
    type Target = SynthInfo;
    /// `trees.val_labels` etc. read the dataset's [`SynthInfo`].
    fn deref(&self) -> &SynthInfo {
        &self.info
    }
}
