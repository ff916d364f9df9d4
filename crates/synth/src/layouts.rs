//! The same synthetic photos in the layouts ImageNet is downloaded in
//! besides the official files: Kaggle's ImageNet Object Localization
//! Challenge (directory or zip) and Hugging Face `imagenet-1k` (tar.gz or
//! parquet). Every layout holds byte-identical photo files for the same
//! config; only the packing and the names' suffixes differ.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::plan::{FilePlan, Plan};
use super::{devkit_files, info, io_err, render_files, SynthConfig, SynthError, SynthInfo, BATCH};

/// The layouts [`generate_layout`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// The three official files ([`crate::generate`]).
    Official,
    /// The extracted tree ([`crate::generate_trees`]).
    Tree,
    /// Kaggle's directory.
    Kaggle,
    /// Kaggle's zip, as downloaded.
    KaggleZip,
    /// Hugging Face tar.gz.
    HfTar,
    /// Hugging Face parquet.
    HfParquet,
}

/// Kaggle's zip as downloaded.
pub const KAGGLE_ZIP: &str = "imagenet-object-localization-challenge.zip";
/// Default [`LayoutOptions::rows_per_group`] (small, so that small
/// synthetic files have several row groups).
pub const PARQUET_ROWS_PER_GROUP: usize = 16;
/// Default [`LayoutOptions::train_per_file`].
pub const HF_TRAIN_PER_FILE: usize = 64;

/// How the Hugging Face layouts split the images into files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutOptions {
    /// Train images per `train_images_<k>.tar.gz` or `train-*.parquet`.
    pub train_per_file: usize,
    /// Rows per parquet row group.
    pub rows_per_group: usize,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        LayoutOptions {
            train_per_file: HF_TRAIN_PER_FILE,
            rows_per_group: PARQUET_ROWS_PER_GROUP,
        }
    }
}

/// What [`generate_layout`] wrote.
#[derive(Debug, Clone)]
pub struct SynthLayout {
    /// The paths to give the preprocessor (`--from`): the directory, or the
    /// files.
    pub from: Vec<PathBuf>,
    /// The files written.
    pub files: Vec<PathBuf>,
    /// The dataset's content.
    pub info: SynthInfo,
}

/// Train files in the canonical order: by class (sorted WNID), then name.
fn train_sorted(plan: &Plan) -> Vec<FilePlan> {
    let mut files: Vec<FilePlan> = plan.train.iter().flatten().cloned().collect();
    files.sort_by(|a, b| (a.class, &a.name).cmp(&(b.class, &b.name)));
    files
}

/// Receives each rendered file and its bytes.
type Sink<'a> = dyn FnMut(&FilePlan, Vec<u8>) -> Result<(), SynthError> + 'a;

/// Renders `files` in batches, handing each file's bytes to `sink`.
fn each_rendered(
    files: &[FilePlan],
    plan: &Plan,
    cfg: &SynthConfig,
    sink: &mut Sink<'_>,
) -> Result<(), SynthError> {
    for batch in files.chunks(BATCH) {
        let bytes = render_files(batch, plan, cfg.jpeg_quality)?;
        for (f, data) in batch.iter().zip(bytes) {
            sink(f, data)?;
        }
    }
    Ok(())
}

/// `LOC_synset_mapping.txt`: `<wnid> <words>` in WNID order.
fn synset_mapping(plan: &Plan) -> String {
    plan.wnids
        .iter()
        .zip(&plan.words)
        .map(|(w, words)| format!("{w} {words}\n"))
        .collect()
}

/// `LOC_val_solution.csv`: the WNID and a box over the whole picture.
fn val_solution(plan: &Plan) -> String {
    let mut s = String::from("ImageId,PredictionString\n");
    for f in &plan.val {
        let id = f.name.rsplit_once('.').map_or(f.name.as_str(), |(s, _)| s);
        s.push_str(&format!(
            "{id},{} 0 0 {} {} \n",
            plan.wnids[f.class],
            f.width - 1,
            f.height - 1
        ));
    }
    s
}

/// Hugging Face's `classes.py`: `IMAGENET2012_CLASSES`, in WNID order.
fn classes_py(plan: &Plan) -> String {
    let mut s = String::from(
        "from collections import OrderedDict\n\nIMAGENET2012_CLASSES = OrderedDict(\n    {\n",
    );
    for (w, words) in plan.wnids.iter().zip(&plan.words) {
        let words = words.replace('\\', "\\\\").replace('"', "\\\"");
        s.push_str(&format!("        \"{w}\": \"{words}\",\n"));
    }
    s.push_str("    }\n)\n");
    s
}

/// A name with Hugging Face's `_<wnid>` suffix.
fn hf_name(name: &str, wnid: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}_{wnid}.{ext}"),
        None => format!("{name}_{wnid}"),
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), SynthError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    std::fs::write(path, data).map_err(io_err(path))
}

/// Writes the photos of `cfg` in `layout` into `dir`.
pub fn generate_layout(
    dir: &Path,
    cfg: &SynthConfig,
    layout: Layout,
) -> Result<SynthLayout, SynthError> {
    generate_layout_with(dir, cfg, layout, LayoutOptions::default())
}

/// [`generate_layout`] with the Hugging Face files split as `opts` says.
pub fn generate_layout_with(
    dir: &Path,
    cfg: &SynthConfig,
    layout: Layout,
    opts: LayoutOptions,
) -> Result<SynthLayout, SynthError> {
    if opts.train_per_file == 0 || opts.rows_per_group == 0 {
        return Err(SynthError::Config(
            "train_per_file and rows_per_group must be at least 1".into(),
        ));
    }
    match layout {
        Layout::Official => {
            let d = crate::generate(dir, cfg)?;
            let files = vec![d.train_tar.clone(), d.val_tar.clone(), d.devkit.clone()];
            Ok(SynthLayout {
                from: files.clone(),
                files,
                info: d.info,
            })
        }
        Layout::Tree => {
            let t = crate::generate_trees(dir, cfg)?;
            Ok(SynthLayout {
                from: vec![dir.to_path_buf()],
                files: vec![t.train_dir.clone(), t.val_dir.clone(), t.devkit.clone()],
                info: t.info,
            })
        }
        Layout::Kaggle => kaggle_dir(dir, cfg),
        Layout::KaggleZip => kaggle_zip(dir, cfg),
        Layout::HfTar => hf_tar(dir, cfg, opts),
        Layout::HfParquet => hf_parquet(dir, cfg, opts),
    }
}

const CLS_LOC: &str = "ILSVRC/Data/CLS-LOC";

fn kaggle_dir(dir: &Path, cfg: &SynthConfig) -> Result<SynthLayout, SynthError> {
    let plan = Plan::new(cfg)?;
    let images = dir.join(CLS_LOC);
    each_rendered(&train_sorted(&plan), &plan, cfg, &mut |f, data| {
        write_file(
            &images
                .join("train")
                .join(&plan.wnids[f.class])
                .join(&f.name),
            &data,
        )
    })?;
    each_rendered(&plan.val, &plan, cfg, &mut |f, data| {
        write_file(&images.join("val").join(&f.name), &data)
    })?;
    let mapping = dir.join("LOC_synset_mapping.txt");
    write_file(&mapping, synset_mapping(&plan).as_bytes())?;
    let solution = dir.join("LOC_val_solution.csv");
    write_file(&solution, val_solution(&plan).as_bytes())?;
    Ok(SynthLayout {
        from: vec![dir.to_path_buf()],
        files: vec![images, mapping, solution],
        info: info(&plan),
    })
}

fn zip_err(path: &Path) -> impl Fn(zip::result::ZipError) -> SynthError + '_ {
    move |e| SynthError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

fn kaggle_zip(dir: &Path, cfg: &SynthConfig) -> Result<SynthLayout, SynthError> {
    use zip::write::SimpleFileOptions;
    let plan = Plan::new(cfg)?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(KAGGLE_ZIP);
    let file = std::fs::File::create(&path).map_err(io_err(&path))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let ze = zip_err(&path);
    let e = io_err(&path);
    let mut add = |name: String, data: &[u8]| -> Result<(), SynthError> {
        zip.start_file(name, opts).map_err(&ze)?;
        zip.write_all(data).map_err(&e)
    };
    add(
        "LOC_synset_mapping.txt".into(),
        synset_mapping(&plan).as_bytes(),
    )?;
    add(
        "LOC_val_solution.csv".into(),
        val_solution(&plan).as_bytes(),
    )?;
    each_rendered(&train_sorted(&plan), &plan, cfg, &mut |f, data| {
        add(
            format!("{CLS_LOC}/train/{}/{}", plan.wnids[f.class], f.name),
            &data,
        )
    })?;
    each_rendered(&plan.val, &plan, cfg, &mut |f, data| {
        add(format!("{CLS_LOC}/val/{}", f.name), &data)
    })?;
    zip.finish()
        .map_err(zip_err(&path))?
        .flush()
        .map_err(io_err(&path))?;
    Ok(SynthLayout {
        from: vec![path.clone()],
        files: vec![path.clone()],
        info: info(&plan),
    })
}

/// A tar.gz of `files` named with Hugging Face's suffix.
fn write_tar_gz(
    path: &Path,
    files: &[FilePlan],
    plan: &Plan,
    cfg: &SynthConfig,
) -> Result<(), SynthError> {
    let e = io_err(path);
    let file = std::fs::File::create(path).map_err(&e)?;
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    each_rendered(files, plan, cfg, &mut |f, data| {
        let name = hf_name(&f.name, &plan.wnids[f.class]);
        let h = devkit_files::file_header(&name, data.len()).map_err(&e)?;
        b.append(&h, data.as_slice()).map_err(&e)
    })?;
    b.into_inner()
        .map_err(&e)?
        .finish()
        .map_err(&e)?
        .flush()
        .map_err(&e)
}

fn hf_tar(dir: &Path, cfg: &SynthConfig, opts: LayoutOptions) -> Result<SynthLayout, SynthError> {
    let plan = Plan::new(cfg)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(io_err(&data))?;
    let mut files = Vec::new();
    for (k, chunk) in train_sorted(&plan).chunks(opts.train_per_file).enumerate() {
        let path = data.join(format!("train_images_{k}.tar.gz"));
        write_tar_gz(&path, chunk, &plan, cfg)?;
        files.push(path);
    }
    let val = data.join("val_images.tar.gz");
    write_tar_gz(&val, &plan.val, &plan, cfg)?;
    files.push(val);
    let classes = dir.join("classes.py");
    write_file(&classes, classes_py(&plan).as_bytes())?;
    files.push(classes);
    Ok(SynthLayout {
        from: vec![dir.to_path_buf()],
        files,
        info: info(&plan),
    })
}

/// Hugging Face's parquet schema: the image struct and the label.
const PARQUET_SCHEMA: &str = "message schema {
    optional group image {
        optional binary bytes;
        optional binary path (STRING);
    }
    optional int64 label;
}";

fn parquet_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> SynthError + '_ {
    move |e| SynthError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// One parquet file of `files`, in row groups of `rows_per_group`.
fn write_parquet(
    path: &Path,
    files: &[FilePlan],
    plan: &Plan,
    cfg: &SynthConfig,
    rows_per_group: usize,
) -> Result<(), SynthError> {
    let pe = parquet_err(path);
    let schema = Arc::new(parse_message_type(PARQUET_SCHEMA).map_err(&pe)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(&pe)?;
    for group in files.chunks(rows_per_group) {
        let bytes = render_files(group, plan, cfg.jpeg_quality)?;
        let images: Vec<ByteArray> = bytes.into_iter().map(ByteArray::from).collect();
        let paths: Vec<ByteArray> = group
            .iter()
            .map(|f| ByteArray::from(hf_name(&f.name, &plan.wnids[f.class]).as_str()))
            .collect();
        let labels: Vec<i64> = group.iter().map(|f| f.class as i64).collect();
        let defs = vec![2i16; group.len()];
        let mut rg = writer.next_row_group().map_err(&pe)?;
        let mut col = rg.next_column().map_err(&pe)?.expect("image.bytes");
        col.typed::<ByteArrayType>()
            .write_batch(&images, Some(&defs), None)
            .map_err(&pe)?;
        col.close().map_err(&pe)?;
        let mut col = rg.next_column().map_err(&pe)?.expect("image.path");
        col.typed::<ByteArrayType>()
            .write_batch(&paths, Some(&defs), None)
            .map_err(&pe)?;
        col.close().map_err(&pe)?;
        let mut col = rg.next_column().map_err(&pe)?.expect("label");
        let label_defs = vec![1i16; group.len()];
        col.typed::<Int64Type>()
            .write_batch(&labels, Some(&label_defs), None)
            .map_err(&pe)?;
        col.close().map_err(&pe)?;
        rg.close().map_err(&pe)?;
    }
    writer.close().map_err(&pe)?;
    Ok(())
}

fn hf_parquet(
    dir: &Path,
    cfg: &SynthConfig,
    opts: LayoutOptions,
) -> Result<SynthLayout, SynthError> {
    let plan = Plan::new(cfg)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(io_err(&data))?;
    let mut files = Vec::new();
    let train = train_sorted(&plan);
    let n = train.len().div_ceil(opts.train_per_file);
    for (k, chunk) in train.chunks(opts.train_per_file).enumerate() {
        let path = data.join(format!("train-{k:05}-of-{n:05}.parquet"));
        write_parquet(&path, chunk, &plan, cfg, opts.rows_per_group)?;
        files.push(path);
    }
    let val = data.join("validation-00000-of-00001.parquet");
    write_parquet(&val, &plan.val, &plan, cfg, opts.rows_per_group)?;
    files.push(val);
    let classes = dir.join("classes.py");
    write_file(&classes, classes_py(&plan).as_bytes())?;
    files.push(classes);
    Ok(SynthLayout {
        from: vec![dir.to_path_buf()],
        files,
        info: info(&plan),
    })
}
