//! Hostile files in an input: decompression bombs are skipped from their
//! header and reported with their size, a truncated JPEG is never written as
//! an image, and a JPEG libjpeg only warns about is written and its warning
//! reported in `warnings.tsv`.

mod pipeline_support;

use std::path::Path;

use pipeline_support::read_split;
use preprocess::{run, NoProgress, PreprocessConfig};

#[path = "../../decode/tests/support/hostile_files.rs"]
mod hostile_files;

use hostile_files::{jpeg, jpeg_claiming as jpeg_bomb, png_claiming as png_bomb};

fn tsv(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.to_owned(), b.to_owned())
        })
        .collect()
}

#[test]
fn bombs_and_truncated_files_are_skipped_and_warnings_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let class = tmp.path().join("train/n00000001");
    std::fs::create_dir_all(&class).unwrap();
    let good = jpeg(320, 240);
    for i in 0..3 {
        std::fs::write(class.join(format!("n00000001_{i}.JPEG")), &good).unwrap();
    }
    std::fs::write(class.join("n00000001_bomb.JPEG"), jpeg_bomb(32000, 32000)).unwrap();
    std::fs::write(class.join("n00000001_png.JPEG"), png_bomb(20000, 20000)).unwrap();
    let scan = good.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
    let cuts = [scan + 40, good.len() / 2, good.len() - 3, good.len() - 1];
    for (k, cut) in cuts.iter().enumerate() {
        std::fs::write(class.join(format!("n00000001_cut{k}.JPEG")), &good[..*cut]).unwrap();
    }
    // Cut short, then the end-of-image marker: the crafted bomb's damage.
    let mut ended = good[..scan + 200].to_vec();
    ended.extend_from_slice(&[0xFF, 0xD9]);
    std::fs::write(class.join("n00000001_ended.JPEG"), &ended).unwrap();
    // Stray bytes between two header segments: a warning, the image kept.
    let mut stray = good[..scan].to_vec();
    stray.extend_from_slice(&[0x00, 0x11, 0x22]);
    stray.extend_from_slice(&good[scan..]);
    std::fs::write(class.join("n00000001_stray.JPEG"), &stray).unwrap();

    let out = tmp.path().join("out");
    let mut cfg = PreprocessConfig::new(&out);
    cfg.train_dir = Some(tmp.path().join("train"));
    cfg.workers = 2;
    let summary = run(&cfg, &NoProgress).unwrap();
    assert_eq!(summary.images(), 4, "three good photos and the stray one");
    assert_eq!(summary.skipped(), 2 + cuts.len() as u64 + 1);

    let written: Vec<String> = read_split(&out, "train")
        .into_iter()
        .flat_map(|s| s.names)
        .collect();
    assert!(
        written.iter().all(|n| !n.contains("cut")
            && !n.contains("bomb")
            && !n.contains("png")
            && !n.contains("ended")),
        "{written:?}"
    );
    assert!(written.iter().any(|n| n.contains("stray")), "{written:?}");

    let skipped = tsv(&out.join("train/skipped.tsv"));
    let reason = |name: &str| {
        skipped
            .iter()
            .find(|(n, _)| n.ends_with(name))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{name} not in skipped.tsv: {skipped:?}"))
    };
    assert_eq!(
        reason("n00000001_bomb.JPEG"),
        "32000x32000 image: 1024000000 pixels, over the limit of 178956970"
    );
    assert_eq!(
        reason("n00000001_png.JPEG"),
        "20000x20000 image: 400000000 pixels, over the limit of 178956970"
    );
    assert!(reason("n00000001_ended.JPEG").contains("ends before the image does"));

    let warnings = tsv(&out.join("train/warnings.tsv"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].0.ends_with("n00000001_stray.JPEG"));
    assert!(warnings[0].1.contains("extraneous bytes"), "{warnings:?}");

    let identity = std::fs::read_to_string(out.join("dataset.json")).unwrap();
    assert!(identity.contains("\"max_pixels\": 178956970"), "{identity}");
    // Another limit on the same output is another dataset.
    cfg.max_pixels = 1_000_000;
    let err = run(&cfg, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("--max-pixels 178956970, not 1000000"), "{err}");
}
