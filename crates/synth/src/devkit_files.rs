//! The synthetic devkit: `meta.mat` and the validation ground truth, packed
//! as `ILSVRC2012_devkit_t12.tar.gz`.

use std::io::Write;
use std::path::Path;

use matv5::{write_mat, MatValue, MatVariable, WriteOptions};

use super::plan::Plan;
use super::{io_err, SynthError};

const FIELDS: [&str; 8] = [
    "ILSVRC2012_ID",
    "WNID",
    "words",
    "gloss",
    "num_children",
    "children",
    "wordnet_height",
    "num_train_images",
];

/// `meta.mat` bytes: variable `synsets`, an Nx1 struct array, leaves first
/// (ILSVRC2012_IDs 1..=C), then the internal synsets, in ID order.
pub fn meta_mat(
    plan: &Plan,
    train_per_class: usize,
    compress: bool,
) -> Result<Vec<u8>, SynthError> {
    let c = plan.wnids.len();
    let mut by_id: Vec<Vec<MatValue>> = vec![Vec::new(); c];
    for class in 0..c {
        let id = plan.ilsvrc_ids[class];
        by_id[id as usize - 1] = vec![
            MatValue::scalar(id as f64),
            MatValue::string(&plan.wnids[class]),
            MatValue::string(&plan.words[class]),
            MatValue::string(&format!(
                "a synthetic picture of a {} at a random place, size and angle",
                plan.words[class]
            )),
            MatValue::scalar(0.0),
            MatValue::empty(),
            MatValue::scalar(0.0),
            MatValue::scalar(train_per_class as f64),
        ];
    }
    let mut elements = by_id;
    let mut internal = plan.non_leaves.clone();
    internal.sort_by_key(|n| n.ilsvrc_id);
    for n in &internal {
        elements.push(vec![
            MatValue::scalar(n.ilsvrc_id as f64),
            MatValue::string(&n.wnid),
            MatValue::string(&n.words),
            MatValue::string(&format!("a group of synthetic classes ({})", n.words)),
            MatValue::scalar(n.children.len() as f64),
            MatValue::row(n.children.iter().map(|&x| x as f64).collect()),
            MatValue::scalar(n.height as f64),
            MatValue::scalar(n.num_train_images as f64),
        ]);
    }
    let synsets = MatValue::Struct {
        dims: vec![elements.len(), 1],
        fields: FIELDS.iter().map(|s| s.to_string()).collect(),
        elements,
    };
    let mut bytes = Vec::new();
    let opts = WriteOptions {
        compress,
        ..WriteOptions::default()
    };
    write_mat(&mut bytes, &[MatVariable::new("synsets", synsets)], &opts)?;
    Ok(bytes)
}

/// The ground truth text: the ILSVRC2012_ID of each validation file.
pub fn ground_truth(plan: &Plan) -> String {
    let mut s = String::with_capacity(plan.val.len() * 4);
    for f in &plan.val {
        s.push_str(&plan.ilsvrc_ids[f.class].to_string());
        s.push('\n');
    }
    s
}

/// A tar header for a regular file (fixed time and owner: reproducible).
pub fn file_header(name: &str, size: usize) -> std::io::Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name)?;
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_mtime(1_335_830_400);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

fn dir_header(name: &str) -> std::io::Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name)?;
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(1_335_830_400);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_cksum();
    Ok(h)
}

/// Writes `ILSVRC2012_devkit_t12.tar.gz` with a top directory, decoy
/// members, `data/meta.mat` and `data/ILSVRC2012_validation_ground_truth.txt`.
pub fn write_devkit(
    path: &Path,
    plan: &Plan,
    train_per_class: usize,
    compress_meta: bool,
) -> Result<(), SynthError> {
    let meta = meta_mat(plan, train_per_class, compress_meta)?;
    let gt = ground_truth(plan);
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(file),
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    let top = "ILSVRC2012_devkit_t12";
    let readme = b"Synthetic stand-in for the ILSVRC2012 development kit.\n\
data/meta.mat: struct array 'synsets' (leaf synsets have num_children == 0).\n\
data/ILSVRC2012_validation_ground_truth.txt: one ILSVRC2012_ID per validation image.\n";
    let entries: Vec<(String, Option<&[u8]>)> = vec![
        (format!("{top}/"), None),
        (
            format!("{top}/COPYING"),
            Some(b"Synthetic data, free to use.\n"),
        ),
        (format!("{top}/readme.txt"), Some(readme)),
        (format!("{top}/data/"), None),
        (
            format!("{top}/data/ILSVRC2012_validation_blacklist.txt"),
            Some(b"1\n"),
        ),
        (format!("{top}/data/meta.mat"), Some(&meta)),
        (
            format!("{top}/data/ILSVRC2012_validation_ground_truth.txt"),
            Some(gt.as_bytes()),
        ),
        (format!("{top}/evaluation/"), None),
        (
            format!("{top}/evaluation/demo.val.pred.txt"),
            Some(b"1 2 3 4 5\n"),
        ),
    ];
    let werr = io_err(path);
    for (name, data) in entries {
        match data {
            None => b
                .append(&dir_header(&name).map_err(&werr)?, std::io::empty())
                .map_err(&werr)?,
            Some(d) => b
                .append(&file_header(&name, d.len()).map_err(&werr)?, d)
                .map_err(&werr)?,
        }
    }
    let gz = b.into_inner().map_err(&werr)?;
    let mut w = gz.finish().map_err(&werr)?;
    w.flush().map_err(&werr)?;
    Ok(())
}
