//! Robustness: an interrupted run resumed equals an uninterrupted one; a
//! different dataset in OUT is refused; a truncated tar is an error naming
//! the file and the member, after keeping the completed shards.

mod pipeline_support;

use std::path::Path;

use pipeline_support::*;
use preprocess::synth::{generate, SynthConfig, SynthDataset};
use preprocess::{run, NoProgress, PreprocessConfig, PreprocessError};

fn dataset(dir: &Path, classes: usize) -> SynthDataset {
    let cfg = SynthConfig {
        classes,
        train_per_class: 9,
        val_images: 10,
        min_side: 48,
        max_side: 120,
        seed: 3,
        plant_odd_files: true,
        ..SynthConfig::default()
    };
    generate(dir, &cfg).unwrap()
}

fn config(out: &Path, data: &SynthDataset) -> PreprocessConfig {
    let mut cfg = PreprocessConfig::new(out);
    cfg.train_tar = Some(data.train_tar.clone());
    cfg.val_tar = Some(data.val_tar.clone());
    cfg.devkit = Some(data.devkit.clone());
    cfg.images_per_shard = 3;
    cfg.open_shards = 2;
    cfg
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"), 3);

    let full = tmp.path().join("full");
    let mut cfg = config(&full, &data);
    cfg.workers = 1;
    let s = run(&cfg, &NoProgress).unwrap();
    assert!(
        s.splits[0].shards >= 6,
        "enough shards to interrupt between"
    );

    // Odd counts stop inside a group of 2 open shards: one is left half-written.
    for halt in [1u64, 3, 5] {
        let out = tmp.path().join(format!("resumed{halt}"));
        let mut cfg = config(&out, &data);
        cfg.workers = 3;
        cfg.halt_after_shards = Some(halt);
        let err = run(&cfg, &NoProgress).unwrap_err();
        assert!(matches!(err, PreprocessError::Interrupted), "{err}");
        let left = files_in(&out.join("train"));
        assert!(left.iter().any(|f| f.ends_with(".tmp")), "{left:?}");
        let complete = left.iter().filter(|f| f.ends_with(".h5")).count() as u64;
        assert!(complete >= halt);
        // Same command again: resumes and completes.
        cfg.halt_after_shards = None;
        let s = run(&cfg, &NoProgress).unwrap();
        assert!(
            (s.splits[0].written_this_run as usize) < data.info.decodable_train_count(),
            "completed shards are not decoded again"
        );
        assert!(!files_in(&out.join("train"))
            .iter()
            .any(|f| f.ends_with(".tmp")));
        assert_same_output(&full, &out);
    }

    // Running the finished command again changes nothing and decodes nothing.
    let s = run(&config(&full, &data), &NoProgress).unwrap();
    assert_eq!(s.written_this_run(), 0);
    let again = tmp.path().join("again");
    run(&config(&again, &data), &NoProgress).unwrap();
    assert_same_output(&full, &again);
}

#[test]
fn different_dataset_in_out_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = dataset(&tmp.path().join("a"), 3);
    let b = dataset(&tmp.path().join("b"), 4);
    let out = tmp.path().join("out");
    run(&config(&out, &a), &NoProgress).unwrap();

    let err = run(&config(&out, &b), &NoProgress).unwrap_err();
    assert!(
        matches!(err, PreprocessError::DifferentDataset { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("different dataset"), "{err}");

    let mut cfg = config(&out, &a);
    cfg.images_per_shard = 5;
    let err = run(&cfg, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("--images-per-shard"), "{err}");

    // A non-empty directory that holds no dataset is not overwritten.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let err = run(&config(&other, &a), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(files_in(&other), ["notes.txt"]);
}

#[test]
fn truncated_tar_names_file_and_member_and_keeps_complete_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"), 4);
    let bytes = std::fs::read(&data.train_tar).unwrap();
    let cut = tmp.path().join("cut").join("ILSVRC2012_img_train.tar");
    std::fs::create_dir_all(cut.parent().unwrap()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() * 7 / 10 + 100]).unwrap();

    let out = tmp.path().join("out");
    let mut cfg = PreprocessConfig::new(&out);
    cfg.train_tar = Some(cut.clone());
    cfg.devkit = Some(data.devkit.clone());
    cfg.images_per_shard = 3;
    cfg.open_shards = 2;
    let err = run(&cfg, &NoProgress).unwrap_err();
    let msg = err.to_string();
    match &err {
        PreprocessError::Tar { file, member, .. } => {
            assert!(file.contains("ILSVRC2012_img_train.tar"), "{msg}");
            assert!(!member.is_empty(), "{msg}");
        }
        other => panic!("expected a tar error, got {other}"),
    }
    let files = files_in(&out.join("train"));
    assert!(files.iter().any(|f| f.ends_with(".h5")), "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
    // The kept shards are complete and readable.
    for s in read_split(&out, "train") {
        assert_eq!(s.labels.len(), s.shape[0]);
    }
}

#[test]
fn jpeg_encoding_stores_the_same_images_compressed_and_resumes_exactly() {
    use loader::format::Encoding;
    use loader::Dataset;

    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"), 3);
    let raw = tmp.path().join("raw");
    run(&config(&raw, &data), &NoProgress).unwrap();
    let jpeg = tmp.path().join("jpeg");
    let mut cfg = config(&jpeg, &data);
    cfg.encoding = Encoding::Jpeg { quality: 90 };
    run(&cfg, &NoProgress).unwrap();

    for sp in ["train", "val"] {
        let a = Dataset::open(&raw.join(sp)).unwrap();
        let b = Dataset::open(&jpeg.join(sp)).unwrap();
        assert!(!a.is_encoded() && b.is_encoded());
        assert_eq!(a.labels(), b.labels(), "{sp}");
        let (mut x, mut y) = (vec![0u8; a.image_bytes()], vec![0u8; b.image_bytes()]);
        let (mut diff, mut raw_bytes, mut jpeg_bytes) = (0u64, 0u64, 0u64);
        for i in 0..a.len() as u64 {
            assert_eq!(a.name(i).unwrap(), b.name(i).unwrap());
            a.read_image(i, &mut x).unwrap();
            b.read_image(i, &mut y).unwrap();
            diff += x
                .iter()
                .zip(&y)
                .map(|(&p, &q)| p.abs_diff(q) as u64)
                .sum::<u64>();
            raw_bytes += x.len() as u64;
        }
        for path in pipeline_support::shard_paths(&jpeg, sp) {
            let f = hdf5::File::open(path).unwrap();
            jpeg_bytes += f.dataset("jpeg").unwrap().size() as u64;
        }
        let mean = diff as f64 / raw_bytes as f64;
        assert!(mean < 3.0, "{sp}: mean absolute difference {mean}");
        assert!(
            jpeg_bytes * 4 < raw_bytes,
            "{sp}: {jpeg_bytes} vs {raw_bytes} bytes"
        );
    }
    // The statistics come from the decoded pixels, before encoding.
    for name in ["mean_image", "eigvals", "eigvecs"] {
        assert_eq!(
            pipeline_support::read_f64(&raw.join("stats.h5"), name),
            pipeline_support::read_f64(&jpeg.join("stats.h5"), name),
            "{name}"
        );
    }

    // Interrupted and resumed: the same JPEG shards, byte for byte.
    let resumed = tmp.path().join("resumed");
    let mut cfg = config(&resumed, &data);
    cfg.encoding = Encoding::Jpeg { quality: 90 };
    cfg.halt_after_shards = Some(3);
    assert!(matches!(
        run(&cfg, &NoProgress).unwrap_err(),
        PreprocessError::Interrupted
    ));
    assert!(files_in(&resumed.join("train"))
        .iter()
        .any(|f| f.ends_with(".jpeg.tmp")));
    cfg.halt_after_shards = None;
    run(&cfg, &NoProgress).unwrap();
    assert_same_output(&jpeg, &resumed);

    // Another encoding into the same directory is another dataset.
    let err = run(&config(&jpeg, &data), &NoProgress).unwrap_err();
    assert!(
        matches!(err, PreprocessError::DifferentDataset { .. })
            && err.to_string().contains("encoding"),
        "{err}"
    );
}
