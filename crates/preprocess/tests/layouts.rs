//! The same photos in every layout ImageNet is downloaded in (the official
//! files, the extracted tree, Kaggle's directory and zip, Hugging Face's
//! tar.gz and parquet) give byte-identical shards, `stats.h5`,
//! `classes.tsv` and `skipped.tsv`; a layout with a part missing, or paths
//! of two layouts, are refused naming what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use preprocess::{detect_layout, run, LayoutKind, NoProgress, PreprocessConfig, ProgressSink};
use synth::{generate_layout, Layout, SynthConfig};

fn small() -> SynthConfig {
    SynthConfig {
        classes: 4,
        train_per_class: 10,
        val_images: 18,
        min_side: 40,
        max_side: 90,
        seed: 21,
        plant_odd_files: true,
        ..SynthConfig::default()
    }
}

/// Every file under `dir` that the dataset's readers use, by relative path.
fn dataset_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["", "train", "val"] {
        let d = dir.join(sub);
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let keep = name.ends_with(".h5") || name == "classes.tsv" || name == "skipped.tsv";
            if p.is_file() && keep {
                out.insert(format!("{sub}/{name}"), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

struct Named(std::sync::Mutex<Vec<LayoutKind>>);

impl ProgressSink for Named {
    fn layout(&self, kind: LayoutKind) {
        self.0.lock().unwrap().push(kind);
    }
    fn start_split(&self, _: preprocess::Split, _: Option<u64>, _: Option<u64>) {}
    fn advance(&self, _: u64, _: u64) {}
    fn finish_split(&self, _: &preprocess::SplitSummary) {}
}

fn convert(from: &[PathBuf], out: &Path) -> LayoutKind {
    let mut cfg = PreprocessConfig::new(out);
    cfg.from = from.to_vec();
    cfg.images_per_shard = 7;
    cfg.open_shards = 2;
    cfg.workers = 2;
    let named = Named(Default::default());
    run(&cfg, &named).unwrap();
    let kinds = named.0.into_inner().unwrap();
    assert_eq!(kinds.len(), 1);
    kinds[0]
}

#[test]
fn every_layout_gives_byte_identical_shards_stats_and_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small();
    let layouts = [
        (Layout::Official, LayoutKind::Official),
        (Layout::Tree, LayoutKind::ExtractedTree),
        (Layout::Kaggle, LayoutKind::Kaggle),
        (Layout::KaggleZip, LayoutKind::Kaggle),
        (Layout::HfTar, LayoutKind::HfTar),
        (Layout::HfParquet, LayoutKind::HfParquet),
    ];
    let mut reference: Option<BTreeMap<String, Vec<u8>>> = None;
    for (i, (layout, kind)) in layouts.into_iter().enumerate() {
        let written = generate_layout(&tmp.path().join(format!("in{i}")), &cfg, layout).unwrap();
        let out = tmp.path().join(format!("out{i}"));
        assert_eq!(convert(&written.from, &out), kind, "{layout:?}");
        let files = dataset_files(&out);
        assert!(files.contains_key("/stats.h5") && files.contains_key("/classes.tsv"));
        assert!(files.keys().filter(|k| k.starts_with("train/")).count() > 3);
        match &reference {
            None => reference = Some(files),
            Some(r) => {
                assert_eq!(
                    r.keys().collect::<Vec<_>>(),
                    files.keys().collect::<Vec<_>>(),
                    "{layout:?}"
                );
                for (name, bytes) in r {
                    assert!(files[name] == *bytes, "{layout:?}: {name} differs");
                }
            }
        }
    }
    // The original names are kept, Hugging Face's suffix taken off.
    let tsv = std::fs::read_to_string(tmp.path().join("out5/val/skipped.tsv")).unwrap();
    assert!(tsv.lines().all(|l| !l.contains("_n")), "{tsv}");
}

#[test]
fn incomplete_and_ambiguous_layouts_are_refused_naming_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        plant_odd_files: false,
        ..small()
    };
    // Kaggle: a val image without its row in LOC_val_solution.csv.
    let k = tmp.path().join("kaggle");
    generate_layout(&k, &cfg, Layout::Kaggle).unwrap();
    let csv = k.join("LOC_val_solution.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("ILSVRC2012_val_00000007"))
        .collect();
    std::fs::write(&csv, kept.join("\n")).unwrap();
    let err = detect_layout(std::slice::from_ref(&k))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ILSVRC2012_val_00000007.JPEG") && err.contains("LOC_val_solution.csv"),
        "{err}"
    );
    std::fs::remove_file(&csv).unwrap();
    let err = detect_layout(std::slice::from_ref(&k))
        .unwrap_err()
        .to_string();
    assert!(err.contains("LOC_val_solution.csv"), "{err}");
    std::fs::remove_file(k.join("LOC_synset_mapping.txt")).unwrap();
    let err = detect_layout(std::slice::from_ref(&k))
        .unwrap_err()
        .to_string();
    assert!(err.contains("LOC_synset_mapping.txt"), "{err}");

    // Hugging Face: a train archive missing from the numbering.
    let h = tmp.path().join("hf");
    let big = SynthConfig {
        train_per_class: 40,
        min_side: 16,
        max_side: 24,
        ..cfg.clone()
    };
    generate_layout(&h, &big, Layout::HfTar).unwrap();
    std::fs::remove_file(h.join("data/train_images_1.tar.gz")).unwrap();
    let err = detect_layout(std::slice::from_ref(&h))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train_images_1.tar.gz"), "{err}");
    let p = tmp.path().join("pq");
    generate_layout(&p, &big, Layout::HfParquet).unwrap();
    std::fs::remove_file(p.join("data/train-00001-of-00003.parquet")).unwrap();
    let err = detect_layout(std::slice::from_ref(&p))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train-00001-of-00003.parquet"), "{err}");

    // Two layouts at once, and no layout at all.
    let o = tmp.path().join("official");
    let d = generate_layout(&o, &cfg, Layout::Official).unwrap();
    let err = detect_layout(&[d.from[0].clone(), p.clone()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ambiguous"), "{err}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = detect_layout(&[empty]).unwrap_err().to_string();
    assert!(err.contains("no ImageNet layout"), "{err}");
    // Official val without the devkit is refused when run.
    let mut c = PreprocessConfig::new(tmp.path().join("out"));
    c.from = vec![d.from[1].clone()];
    let err = run(&c, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("--devkit"), "{err}");
}

#[test]
fn parts_and_resume_from_a_hugging_face_layout_equal_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let written = generate_layout(&tmp.path().join("in"), &small(), Layout::HfParquet).unwrap();
    let base = |out: &Path| {
        let mut cfg = PreprocessConfig::new(out);
        cfg.from = written.from.clone();
        cfg.images_per_shard = 7;
        cfg.open_shards = 2;
        cfg
    };
    let one = tmp.path().join("one");
    run(&base(&one), &NoProgress).unwrap();
    let reference = dataset_files(&one);

    // Stopped abruptly after two shards, then run again.
    let resumed = tmp.path().join("resumed");
    let mut cfg = base(&resumed);
    cfg.halt_after_shards = Some(2);
    assert!(run(&cfg, &NoProgress).is_err());
    run(&base(&resumed), &NoProgress).unwrap();
    assert!(dataset_files(&resumed) == reference, "resumed run differs");

    // In two parts; the last to complete finishes the dataset.
    let parts = tmp.path().join("parts");
    for index in [1, 0] {
        let mut cfg = base(&parts);
        cfg.part = Some(preprocess::Part { index, count: 2 });
        run(&cfg, &NoProgress).unwrap();
    }
    assert!(
        dataset_files(&parts) == reference,
        "parts differ from one run"
    );
}

#[test]
fn a_hugging_face_archive_out_of_order_is_refused_naming_the_member() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("classes.py"),
        "IMAGENET2012_CLASSES = OrderedDict({\n    \"n01440764\": \"tench, Tinca tinca\",\n})\n",
    )
    .unwrap();
    let file = std::fs::File::create(dir.join("data/val_images.tar.gz")).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for name in [
        "ILSVRC2012_val_00000002_n01440764.JPEG",
        "ILSVRC2012_val_00000001_n01440764.JPEG",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &b"abc"[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
    let mut cfg = PreprocessConfig::new(tmp.path().join("out"));
    cfg.from = vec![dir];
    let err = run(&cfg, &NoProgress).unwrap_err().to_string();
    assert!(
        err.contains("ILSVRC2012_val_00000001_n01440764.JPEG")
            && err.contains("ILSVRC2012_val_00000002_n01440764.JPEG"),
        "{err}"
    );
}

/// Hugging Face's train archives may each hold any classes: archives each
/// in the canonical order are merged into it.
#[test]
fn hugging_face_archives_of_interleaved_members_are_merged() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    generate_layout(&one, &small(), Layout::HfTar).unwrap();
    // The train members of the one archive, dealt round-robin over three.
    let mut members = Vec::new();
    let gz = flate2::read::GzDecoder::new(
        std::fs::File::open(one.join("data/train_images_0.tar.gz")).unwrap(),
    );
    let mut archive = tar::Archive::new(gz);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        members.push((name, data));
    }
    assert!(!one.join("data/train_images_1.tar.gz").exists());
    let three = tmp.path().join("three");
    std::fs::create_dir_all(three.join("data")).unwrap();
    for f in ["classes.py", "data/val_images.tar.gz"] {
        std::fs::copy(one.join(f), three.join(f)).unwrap();
    }
    for k in 0..3 {
        let path = three.join(format!("data/train_images_{k}.tar.gz"));
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        for (name, data) in members.iter().skip(k).step_by(3) {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }
    convert(&[one], &tmp.path().join("out-one"));
    convert(&[three], &tmp.path().join("out-three"));
    assert!(
        dataset_files(&tmp.path().join("out-one")) == dataset_files(&tmp.path().join("out-three"))
    );
}

/// A damaged member of Kaggle's zip is skipped and reported, as a broken
/// file of the official tars is; the others are converted.
#[test]
fn a_damaged_zip_member_is_skipped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        plant_odd_files: false,
        ..small()
    };
    let written = generate_layout(&tmp.path().join("in"), &cfg, Layout::KaggleZip).unwrap();
    let zip = &written.from[0];
    let mut bytes = std::fs::read(zip).unwrap();
    // The middle of the file lies in a member's compressed bytes.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4] {
        *b ^= 0x5a;
    }
    std::fs::write(zip, &bytes).unwrap();
    let out = tmp.path().join("out");
    convert(&written.from, &out);
    let skipped: String = ["train", "val"]
        .iter()
        .map(|s| std::fs::read_to_string(out.join(s).join("skipped.tsv")).unwrap())
        .collect();
    // One member, or two when the bytes reach the next one's header.
    let lines: Vec<&str> = skipped.lines().collect();
    assert!((1..=2).contains(&lines.len()), "{skipped}");
    for l in lines {
        assert!(
            ["deflate", "CRC-32", "Zip"].iter().any(|w| l.contains(w)),
            "{skipped}"
        );
    }
}
