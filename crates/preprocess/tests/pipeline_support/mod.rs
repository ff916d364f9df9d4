//! Helpers shared by the pipeline tests: reading shards back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;

/// Everything a shard holds.
#[derive(Debug, PartialEq)]
pub struct ShardContent {
    pub file: String,
    pub images: Vec<u8>,
    pub shape: Vec<usize>,
    pub labels: Vec<i64>,
    pub names: Vec<String>,
    pub skipped: Vec<(String, String)>,
}

fn strings(f: &hdf5::File, name: &str) -> Vec<String> {
    f.dataset(name)
        .unwrap()
        .read_raw::<VarLenUnicode>()
        .unwrap()
        .iter()
        .map(|s| s.as_str().to_string())
        .collect()
}

pub fn shard_paths(out: &Path, split: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join(split))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect();
    v.sort();
    v
}

pub fn read_shard(path: &Path) -> ShardContent {
    let f = hdf5::File::open(path).unwrap();
    // Raw pixels, or the JPEG streams followed by their offsets.
    let (images, shape) = match f.dataset("images") {
        Ok(ds) => (ds.read_raw::<u8>().unwrap(), ds.shape()),
        Err(_) => {
            let ds = f.dataset("jpeg").unwrap();
            let mut bytes = ds.read_raw::<u8>().unwrap();
            let offsets = f
                .dataset("jpeg_offsets")
                .unwrap()
                .read_raw::<u64>()
                .unwrap();
            bytes.extend(offsets.iter().flat_map(|o| o.to_le_bytes()));
            (bytes, vec![offsets.len() - 1])
        }
    };
    let labels = f.dataset("labels").unwrap().read_raw::<i64>().unwrap();
    let names = strings(&f, "names");
    let skipped = strings(&f, "skipped_names")
        .into_iter()
        .zip(strings(&f, "skipped_reasons"))
        .collect();
    ShardContent {
        file: path.file_name().unwrap().to_string_lossy().into_owned(),
        images,
        shape,
        labels,
        names,
        skipped,
    }
}

pub fn read_split(out: &Path, split: &str) -> Vec<ShardContent> {
    shard_paths(out, split)
        .iter()
        .map(|p| read_shard(p))
        .collect()
}

pub fn read_f64(path: &Path, name: &str) -> Vec<f64> {
    hdf5::File::open(path)
        .unwrap()
        .dataset(name)
        .unwrap()
        .read_raw::<f64>()
        .unwrap()
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Asserts that two output directories hold the same dataset: the same
/// files in each split, the same shard contents (pixels or JPEG streams,
/// labels, names, skipped inputs), `skipped.tsv`, statistics values,
/// `classes.tsv`, `manifest.json` and `dataset.json`. Timestamps inside the
/// HDF5 files play no part. `OUT/parts` (present after a conversion in
/// parts) is the only top-level entry allowed to differ.
pub fn assert_same_output(a: &Path, b: &Path) {
    let top =
        |p: &Path| -> Vec<String> { files_in(p).into_iter().filter(|f| f != "parts").collect() };
    assert_eq!(top(a), top(b), "top-level files");
    for sp in ["train", "val"] {
        assert_eq!(files_in(&a.join(sp)), files_in(&b.join(sp)), "{sp} files");
        assert_eq!(read_split(a, sp), read_split(b, sp), "{sp} shards");
        assert_eq!(
            std::fs::read_to_string(a.join(sp).join("skipped.tsv")).unwrap(),
            std::fs::read_to_string(b.join(sp).join("skipped.tsv")).unwrap()
        );
    }
    for name in [
        "mean_image",
        "rgb_mean",
        "rgb_cov",
        "eigvals",
        "eigvecs",
        "count",
    ] {
        let read = |p: &Path| {
            let f = hdf5::File::open(p.join("stats.h5")).unwrap();
            let ds = f.dataset(name).unwrap();
            ds.read_raw::<f64>().unwrap_or_else(|_| {
                ds.read_raw::<f32>()
                    .map(|v| v.into_iter().map(f64::from).collect())
                    .unwrap_or_else(|_| vec![ds.read_scalar::<u64>().unwrap() as f64])
            })
        };
        assert_eq!(read(a), read(b), "stats {name}");
    }
    for file in ["manifest.json", "classes.tsv", "dataset.json"] {
        assert_eq!(
            std::fs::read_to_string(a.join(file)).unwrap(),
            std::fs::read_to_string(b.join(file)).unwrap(),
            "{file}"
        );
    }
}
