//! Writes the seed corpora of every target into `DIR/<target>/` (default
//! `corpus/`), from the project's own writers: a small synthetic dataset
//! (`synth`: the train and val tars, the devkit and its `meta.mat`; the
//! same photos in Kaggle's and Hugging Face's layouts),
//! `matv5::write_mat`, shards written by `shards::ShardWriter`, the
//! dataset files `preprocess::run` writes, and checkpoint files as
//! `trainer::checkpoint` writes them. Each seed starts with its target's
//! mode byte (see the targets).

use std::io::Read;
use std::path::{Path, PathBuf};

use alexnet_fuzz::{
    checkpoint_state, join_n, join_two, mat_header, tiny_run_config, tiny_train_dir,
    CHECKPOINT_NAME,
};
use matv5::{MatValue, MatVariable, NumericClass, WriteOptions};
use shards::{Encoding, ShardWriter};

// Built with the targets' coverage instrumentation, this program needs
// libFuzzer's callbacks linked in; they in turn want a fuzz target, so it
// has an empty one (its own `main` is the entry point, not libFuzzer's).
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let work = std::env::temp_dir().join(format!("alexnet-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let counts = [
        ("matv5", matv5_seeds(&work)),
        ("devkit", devkit_seeds(&work)),
        ("shard_index", shard_seeds(&work)),
        ("tar", tar_seeds(&work)),
        ("kaggle", kaggle_seeds(&work)),
        ("hf_tar", hf_tar_seeds(&work)),
        ("hf_parquet", hf_parquet_seeds(&work)),
        ("layout", layout_seeds(&work)),
        ("dataset", dataset_seeds(&work)),
        ("checkpoint", checkpoint_seeds()),
    ];
    for (target, seeds) in counts {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
    std::fs::remove_dir_all(&work).unwrap();
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

/// A small synthetic dataset (tiny images, odd files planted), generated
/// once into `work/synth`; `compress_meta` as asked.
fn synth_dataset(work: &Path, compress_meta: bool) -> synth::SynthDataset {
    let cfg = synth::SynthConfig {
        classes: 3,
        train_per_class: 4,
        val_images: 12,
        min_side: 8,
        max_side: 12,
        seed: 23,
        plant_odd_files: compress_meta,
        non_leaf_synsets: 2,
        jpeg_quality: 50,
        compress_meta,
    };
    synth::generate(&work.join(format!("synth-{compress_meta}")), &cfg).unwrap()
}

/// The members of a tar.gz ending in `suffix`.
fn member(tar_gz: &Path, suffix: &str) -> Vec<u8> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(tar_gz).unwrap());
    let mut archive = tar::Archive::new(gz);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy().ends_with(suffix) {
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("no member {suffix} in {}", tar_gz.display());
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn mat(vars: &[MatVariable], compress: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    let opts = WriteOptions {
        compress,
        ..WriteOptions::default()
    };
    matv5::write_mat(&mut bytes, vars, &opts).unwrap();
    bytes
}

fn matv5_seeds(work: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for compress in [false, true] {
        let ds = synth_dataset(work, compress);
        let meta = member(&ds.devkit, "data/meta.mat");
        seeds.push(with_mode(0, &meta));
        seeds.push(with_mode(1, &meta[128..]));
    }
    let vars = vec![
        MatVariable::new("x", MatValue::row(vec![1.0, -2.5, f64::NAN])),
        MatVariable::new("e", MatValue::empty()),
        MatVariable::new("s", MatValue::string("tench, Tinca tinca")),
        MatVariable::new(
            "i",
            MatValue::Numeric {
                class: NumericClass::Int16,
                dims: vec![2, 2],
                real: vec![1.0, -2.0, 3.0, 300.0],
                imag: Some(vec![0.0, 1.0, 0.0, -1.0]),
            },
        ),
        MatVariable::new(
            "c",
            MatValue::Cell {
                dims: vec![1, 2],
                cells: vec![MatValue::scalar(7.0), MatValue::string("ab")],
            },
        ),
        MatVariable::new(
            "st",
            MatValue::Struct {
                dims: vec![2, 1],
                fields: vec!["a".into(), "bb".into()],
                elements: vec![
                    vec![MatValue::scalar(1.0), MatValue::string("x")],
                    vec![MatValue::empty(), MatValue::row(vec![2.0, 3.0])],
                ],
            },
        ),
        MatVariable::new(
            "m",
            MatValue::Char {
                dims: vec![2, 3],
                text: "abc\ndef".into(),
            },
        ),
    ];
    let plain = mat(&vars, false);
    seeds.push(with_mode(0, &plain));
    seeds.push(with_mode(1, &plain[128..]));
    seeds.push(with_mode(2, &plain[128..]));
    seeds.push(with_mode(0, &mat(&vars, true)));
    // A big-endian header in front of the same (little-endian) elements.
    let mut be = mat_header();
    be[124..126].copy_from_slice(&0x0100u16.to_be_bytes());
    be[126..128].copy_from_slice(b"MI");
    be.extend_from_slice(&plain[128..]);
    seeds.push(with_mode(0, &be));
    seeds
}

fn devkit_seeds(work: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for compress in [false, true] {
        let ds = synth_dataset(work, compress);
        let archive = std::fs::read(&ds.devkit).unwrap();
        seeds.push(with_mode(0, &archive));
        seeds.push(with_mode(1, &gunzip(&ds.devkit)));
        let meta = member(&ds.devkit, "data/meta.mat");
        let gt = member(&ds.devkit, "data/ILSVRC2012_validation_ground_truth.txt");
        seeds.push(with_mode(2, &join_two(&meta, &gt)));
    }
    seeds
}

/// One finished shard's bytes: `images` images of `side x side`, stored as
/// `encoding`, labels `label0, label0 + 1, ...`.
fn shard(work: &Path, side: usize, images: usize, encoding: Encoding, label0: i64) -> Vec<u8> {
    let path = work.join("shard-00000.h5");
    let mut w = ShardWriter::create(&path, side, encoding, images).unwrap();
    for i in 0..images {
        let pixels: Vec<u8> = (0..side * side * 3)
            .map(|p| (p * 7 + i * 31) as u8)
            .collect();
        let stored = match encoding {
            Encoding::Raw => pixels,
            Encoding::Jpeg { quality } => {
                let mut out = Vec::new();
                shards::encode_jpeg(&pixels, side, side, quality, &mut out).unwrap();
                out
            }
        };
        w.push(&stored, label0 + i as i64, &format!("img{i}.JPEG"))
            .unwrap();
    }
    w.finish(None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

fn shard_seeds(work: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let jpeg = Encoding::Jpeg { quality: 75 };
    for (side, images, encoding, label0) in [
        (4, 3, Encoding::Raw, 0),
        (2, 1, Encoding::Raw, 999),
        (4, 0, Encoding::Raw, 0),
        (8, 2, jpeg, 5),
        (8, 0, jpeg, 0),
    ] {
        let bytes = shard(work, side, images, encoding, label0);
        seeds.push(with_mode(1, &bytes));
        seeds.push(with_mode(0, &bytes));
    }
    seeds
}

fn tar_seeds(work: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for compress in [false, true] {
        let ds = synth_dataset(work, compress);
        let train = std::fs::read(&ds.train_tar).unwrap();
        let val = std::fs::read(&ds.val_tar).unwrap();
        seeds.push(with_mode(2, &train));
        seeds.push(with_mode(3, &val));
        seeds.push(with_mode(0, &train));
        seeds.push(with_mode(1, &val));
    }
    // GNU long names, a directory and a non-tar member in the train tar.
    let mut inner = tar::Builder::new(Vec::new());
    let long = format!("{}.JPEG", "n01440764_".repeat(12));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    inner.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let inner = inner.into_inner().unwrap();
    let mut outer = tar::Builder::new(Vec::new());
    let mut d = tar::Header::new_gnu();
    d.set_entry_type(tar::EntryType::Directory);
    d.set_size(0);
    d.set_mode(0o755);
    outer.append_data(&mut d, "top/", std::io::empty()).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(inner.len() as u64);
    h.set_mode(0o644);
    outer
        .append_data(&mut h, "top/n01440764.tar", &inner[..])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    outer.append_data(&mut h, "README", &b"hello"[..]).unwrap();
    let train = outer.into_inner().unwrap();
    seeds.push(with_mode(2, &train));
    seeds
}

/// The synthetic photos in one of the layouts of `synth::layouts`
/// (several Hugging Face files a split, parquet row groups of 4).
fn synth_layout(work: &Path, layout: synth::Layout) -> synth::SynthLayout {
    let cfg = synth::SynthConfig {
        classes: 3,
        train_per_class: 4,
        val_images: 10,
        min_side: 8,
        max_side: 12,
        seed: 23,
        plant_odd_files: true,
        jpeg_quality: 50,
        ..synth::SynthConfig::default()
    };
    let opts = synth::LayoutOptions {
        train_per_file: 5,
        rows_per_group: 4,
    };
    let dir = work.join(format!("layout-{layout:?}"));
    synth::generate_layout_with(&dir, &cfg, layout, opts).unwrap()
}

/// The files under `dir` whose names end with `suffix`, sorted.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn kaggle_seeds(work: &Path) -> Vec<Vec<u8>> {
    let l = synth_layout(work, synth::Layout::KaggleZip);
    let zip = std::fs::read(&l.from[0]).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap();
    let mut text = |name: &str| {
        let mut s = Vec::new();
        archive.by_name(name).unwrap().read_to_end(&mut s).unwrap();
        s
    };
    let (mapping, solution) = (text("LOC_synset_mapping.txt"), text("LOC_val_solution.csv"));
    let names: Vec<&str> = archive
        .file_names()
        .filter(|n| !n.starts_with("LOC_"))
        .collect();
    let mut names = names.join("\n").into_bytes();
    names.push(b'\n');
    let parts = join_n(&[&mapping, &solution, &names]);
    vec![
        with_mode(0, &zip),
        with_mode(1, &parts),
        with_mode(3, &parts),
    ]
}

fn hf_tar_seeds(work: &Path) -> Vec<Vec<u8>> {
    let l = synth_layout(work, synth::Layout::HfTar);
    let train = files_ending(&l.from[0], ".tar.gz")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("train_images_"))
        .collect::<Vec<_>>();
    let val = files_ending(&l.from[0], "val_images.tar.gz");
    assert!(train.len() >= 2, "several train archives");
    let mut seeds = vec![
        with_mode(0, &std::fs::read(&train[0]).unwrap()),
        with_mode(1, &std::fs::read(&val[0]).unwrap()),
        with_mode(2, &gunzip(&train[0])),
        with_mode(3, &gunzip(&val[0])),
    ];
    seeds.push(with_mode(
        6,
        &join_two(&gunzip(&train[0]), &gunzip(&train[1])),
    ));
    seeds
}

fn hf_parquet_seeds(work: &Path) -> Vec<Vec<u8>> {
    let l = synth_layout(work, synth::Layout::HfParquet);
    let mut seeds = Vec::new();
    for p in files_ending(&l.from[0], ".parquet") {
        let mode = u8::from(p.to_string_lossy().contains("validation-"));
        seeds.push(with_mode(mode, &std::fs::read(&p).unwrap()));
    }
    seeds
}

fn layout_seeds(work: &Path) -> Vec<Vec<u8>> {
    let work = &work.join("layout-seeds");
    let l = synth_layout(work, synth::Layout::Kaggle);
    let root = &l.from[0];
    let mapping = std::fs::read(root.join("LOC_synset_mapping.txt")).unwrap();
    let solution = std::fs::read(root.join("LOC_val_solution.csv")).unwrap();
    let images = root.join("ILSVRC/Data/CLS-LOC");
    let mut names = String::new();
    for p in files_ending(&images, "") {
        let rel = p
            .strip_prefix(&images)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let name = rel
            .strip_prefix("train/")
            .or_else(|| rel.strip_prefix("val/"))
            .unwrap();
        names.push_str(name);
        names.push('\n');
    }
    let hf = synth_layout(work, synth::Layout::HfTar);
    let classes_py = std::fs::read(hf.from[0].join("classes.py")).unwrap();
    let listing = |dir: &Path| {
        let mut s = String::new();
        for p in files_ending(dir, "") {
            s.push_str(&p.strip_prefix(dir).unwrap().to_string_lossy());
            s.push('\n');
        }
        s.into_bytes()
    };
    let pq = synth_layout(work, synth::Layout::HfParquet);
    vec![
        with_mode(0, &join_n(&[&mapping, &solution, names.as_bytes()])),
        with_mode(1, &classes_py),
        with_mode(2, &listing(&hf.from[0])),
        with_mode(2, &listing(&pq.from[0])),
        with_mode(
            2,
            b"ILSVRC2012_img_train.tar\nILSVRC2012_img_val.tar\nILSVRC2012_devkit_t12.tar.gz\n",
        ),
        with_mode(2, b"imagenet-object-localization-challenge.zip\n"),
    ]
}

fn dataset_seeds(work: &Path) -> Vec<Vec<u8>> {
    let train = tiny_train_dir(&work.join("dataset-in"));
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let out = work.join("dataset-run");
    preprocess::run(
        &tiny_run_config(&train, &out, None),
        &preprocess::NoProgress,
    )
    .unwrap();
    let d = shards::DatasetDir::new(&out);
    let (id, classes, manifest) = (read(d.dataset_id()), read(d.classes()), read(d.manifest()));
    let parted = work.join("dataset-parts");
    preprocess::run(
        &tiny_run_config(&train, &parted, Some((0, 1))),
        &preprocess::NoProgress,
    )
    .unwrap();
    let p = shards::DatasetDir::new(&parted);
    let done = read(p.part_file(0, 1, shards::PartFile::Done));
    // A part of a dataset labelled with the devkit's classes (their words
    // included, which `finish` writes rather than keeps).
    let ds = synth_dataset(work, false);
    let devkit_run = work.join("dataset-devkit");
    let mut cfg = preprocess::PreprocessConfig::new(&devkit_run);
    cfg.val_tar = Some(ds.val_tar.clone());
    cfg.devkit = Some(ds.devkit.clone());
    cfg.workers = 1;
    cfg.part = Some(preprocess::Part { index: 0, count: 1 });
    preprocess::run(&cfg, &preprocess::NoProgress).unwrap();
    let k = shards::DatasetDir::new(&devkit_run);
    let devkit_done = read(k.part_file(0, 1, shards::PartFile::Done));
    vec![
        with_mode(0, &classes),
        with_mode(0, &read(k.classes())),
        with_mode(
            1,
            &join_n(&[&done, &read(p.classes()), &read(p.manifest())]),
        ),
        with_mode(
            1,
            &join_n(&[&devkit_done, &read(k.classes()), &read(k.manifest())]),
        ),
        with_mode(2, &join_n(&[&id, &classes, &manifest])),
    ]
}

fn checkpoint_seeds() -> Vec<Vec<u8>> {
    let state = |partial| serde_json::to_vec_pretty(&checkpoint_state(partial)).unwrap();
    let latest = format!("{{\n  \"checkpoint\": \"checkpoints/{CHECKPOINT_NAME}\"\n}}");
    vec![
        with_mode(0, &state(true)),
        with_mode(0, &state(false)),
        with_mode(1, latest.as_bytes()),
    ]
}
