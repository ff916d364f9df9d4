//! End to end on a generated ImageNet-layout dataset: labels (train from the
//! inner tar / directory, val through the devkit), odd files, skipped report,
//! class mixing across shards, statistics, manifest.

mod pipeline_support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use decode::IMAGE_BYTES;
use pipeline_support::*;
use preprocess::{run, Manifest, NoProgress, PreprocessConfig};
use synth::{generate, generate_trees, OddKind, SynthConfig, SynthInfo};

fn small_config() -> SynthConfig {
    SynthConfig {
        classes: 4,
        train_per_class: 7,
        val_images: 12,
        min_side: 64,
        max_side: 200,
        seed: 7,
        plant_odd_files: true,
        ..SynthConfig::default()
    }
}

fn check_split_labels(out: &Path, info: &SynthInfo) {
    let train = read_split(out, "train");
    let mut names = Vec::new();
    for s in &train {
        assert_eq!(s.shape[1..], [256, 256, 3]);
        assert_eq!(s.images.len(), s.shape[0] * IMAGE_BYTES);
        assert_eq!(s.labels.len(), s.shape[0]);
        for (name, &label) in s.names.iter().zip(&s.labels) {
            let wnid = name.split('_').next().unwrap();
            assert_eq!(Some(label as usize), info.class_of_wnid(wnid), "{name}");
            names.push(name.clone());
        }
    }
    assert_eq!(names.len(), info.decodable_train_count());
    let val = read_split(out, "val");
    let mut nval = 0;
    for s in &val {
        for (name, &label) in s.names.iter().zip(&s.labels) {
            let n: usize = name["ILSVRC2012_val_".len()..][..8].parse().unwrap();
            assert_eq!(label as usize, info.val_labels[n - 1], "{name}");
            nval += 1;
        }
    }
    assert_eq!(nval, info.decodable_val_count());

    // Every undecodable file is reported, and only those.
    let mut reported: Vec<String> = ["train", "val"]
        .iter()
        .flat_map(|sp| {
            std::fs::read_to_string(out.join(sp).join("skipped.tsv"))
                .unwrap()
                .lines()
                .map(|l| l.split('\t').next().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    reported.sort();
    let mut broken = info.broken.clone();
    broken.sort();
    assert_eq!(reported, broken);
}

#[test]
fn tar_inputs_labels_odd_files_stats_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&tmp.path().join("in"), &small_config()).unwrap();
    assert!(!data.info.broken.is_empty());
    let out = tmp.path().join("out");
    let mut cfg = PreprocessConfig::new(&out);
    cfg.train_tar = Some(data.train_tar.clone());
    cfg.val_tar = Some(data.val_tar.clone());
    cfg.devkit = Some(data.devkit.clone());
    cfg.images_per_shard = 3;
    cfg.open_shards = 4;
    cfg.workers = 2;
    let summary = run(&cfg, &NoProgress).unwrap();
    let info = &data.info;
    check_split_labels(&out, info);
    assert_eq!(summary.skipped() as usize, info.broken.len());
    assert_eq!(
        summary.images() as usize,
        info.decodable_train_count() + info.decodable_val_count()
    );

    // classes.tsv: sorted WNIDs with their words.
    let tsv = std::fs::read_to_string(out.join("classes.tsv")).unwrap();
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(lines.len(), info.wnids_sorted.len());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            *l,
            format!("{i}\t{}\t{}", info.wnids_sorted[i], info.words[i])
        );
    }

    // Odd but decodable files are in the shards as RGB; grayscale stays grey.
    let mut by_name: HashMap<String, Vec<u8>> = HashMap::new();
    for sp in ["train", "val"] {
        for s in read_split(&out, sp) {
            for (i, n) in s.names.iter().enumerate() {
                by_name.insert(
                    n.clone(),
                    s.images[i * IMAGE_BYTES..][..IMAGE_BYTES].to_vec(),
                );
            }
        }
    }
    for (name, kind) in &info.odd {
        assert_eq!(
            by_name.contains_key(name),
            kind.is_decodable(),
            "{name} {kind:?}"
        );
        if *kind == OddKind::Grayscale {
            let img = &by_name[name];
            assert!(img.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        }
    }

    // Train shards mix classes (the input is ordered by class): at least
    // half of them on this small set, where the skipped broken files leave
    // gaps. The last group of shards holds only the tail of the input:
    // leave it out.
    let train = read_split(&out, "train");
    let id_of = |f: &str| f["shard-".len()..][..5].parse::<usize>().unwrap();
    let last_group = train.iter().map(|s| id_of(&s.file) / 4).max().unwrap();
    let full: Vec<Vec<i64>> = train
        .iter()
        .filter(|s| id_of(&s.file) / 4 < last_group)
        .map(|s| s.labels.clone())
        .collect();
    let mixed = full.iter().filter(|l| l.iter().any(|&x| x != l[0])).count();
    assert!(full.len() >= 8);
    assert!(
        mixed * 2 >= full.len(),
        "{mixed} of {} shards mixed: {full:?}",
        full.len()
    );
    assert!(train.iter().all(|s| s.shape[0] <= 3));

    // Statistics equal a direct computation over the shards' images.
    let n = train.iter().map(|s| s.shape[0]).sum::<usize>() as f64;
    let mut mean = vec![0f64; IMAGE_BYTES];
    let mut rgb = [0f64; 3];
    let mut outer = [[0f64; 3]; 3];
    for s in &train {
        for (i, &v) in s.images.iter().enumerate() {
            mean[i % IMAGE_BYTES] += v as f64;
        }
        for p in s.images.chunks_exact(3) {
            for a in 0..3 {
                rgb[a] += p[a] as f64;
                for b in 0..3 {
                    outer[a][b] += p[a] as f64 * p[b] as f64;
                }
            }
        }
    }
    let stats = out.join("stats.h5");
    let mean_h5 = hdf5::File::open(&stats)
        .unwrap()
        .dataset("mean_image")
        .unwrap()
        .read_raw::<f32>()
        .unwrap();
    for (a, b) in mean.iter().zip(&mean_h5) {
        assert!((a / n - *b as f64).abs() < 1e-3);
    }
    let npix = n * 65536.0;
    let m: Vec<f64> = rgb.iter().map(|v| v / npix).collect();
    let rgb_mean = read_f64(&stats, "rgb_mean");
    let cov = read_f64(&stats, "rgb_cov");
    for a in 0..3 {
        assert!((rgb_mean[a] - m[a]).abs() < 1e-9);
        for b in 0..3 {
            let want = (outer[a][b] / npix - m[a] * m[b]) / (255.0 * 255.0);
            assert!((cov[a * 3 + b] - want).abs() < 1e-9, "cov {a}{b}");
        }
    }
    let vals = read_f64(&stats, "eigvals");
    assert!(vals[0] >= vals[1] && vals[1] >= vals[2] && vals[2] >= -1e-12);
    let count = hdf5::File::open(&stats)
        .unwrap()
        .dataset("count")
        .unwrap()
        .read_scalar::<u64>()
        .unwrap();
    assert_eq!(count as f64, n);

    // Manifest agrees with the shards.
    let manifest = Manifest::read(&out).unwrap();
    assert_eq!(manifest.classes, info.wnids_sorted.len());
    let mt = &manifest.splits["train"];
    assert_eq!(mt.shards.len(), train.len());
    assert_eq!(mt.images as f64, n);
    for (e, s) in mt.shards.iter().zip(&train) {
        assert_eq!(e.file, format!("train/{}", s.file));
        assert_eq!(e.images as usize, s.shape[0]);
    }
}

#[test]
fn extracted_trees_give_the_same_images_and_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg_s = small_config();
    cfg_s.plant_odd_files = true;
    let trees = generate_trees(&tmp.path().join("trees"), &cfg_s).unwrap();
    let tars = generate(&tmp.path().join("tars"), &cfg_s).unwrap();

    let out_t = tmp.path().join("out_trees");
    let mut cfg = PreprocessConfig::new(&out_t);
    cfg.train_dir = Some(trees.train_dir.clone());
    cfg.val_dir = Some(trees.val_dir.clone());
    cfg.devkit = Some(trees.devkit.clone());
    cfg.images_per_shard = 5;
    cfg.open_shards = 2;
    run(&cfg, &NoProgress).unwrap();
    check_split_labels(&out_t, &trees.info);

    let out_a = tmp.path().join("out_tars");
    let mut cfg = PreprocessConfig::new(&out_a);
    cfg.train_tar = Some(tars.train_tar.clone());
    cfg.val_tar = Some(tars.val_tar.clone());
    cfg.devkit = Some(tars.devkit.clone());
    run(&cfg, &NoProgress).unwrap();

    // Same (name -> label, image) content, whatever the layout and sharding.
    let collect = |out: &Path| {
        let mut m = BTreeMap::new();
        for sp in ["train", "val"] {
            for s in read_split(out, sp) {
                for (i, n) in s.names.iter().enumerate() {
                    m.insert(
                        n.clone(),
                        (
                            s.labels[i],
                            s.images[i * IMAGE_BYTES..][..IMAGE_BYTES].to_vec(),
                        ),
                    );
                }
            }
        }
        m
    };
    assert_eq!(collect(&out_t), collect(&out_a));
}

#[test]
fn train_without_devkit_takes_classes_from_the_inner_tar_names() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&tmp.path().join("in"), &SynthConfig::default()).unwrap();
    let out = tmp.path().join("out");
    let mut cfg = PreprocessConfig::new(&out);
    cfg.train_tar = Some(data.train_tar.clone());
    cfg.images_per_shard = 16;
    cfg.open_shards = 2;
    run(&cfg, &NoProgress).unwrap();
    let tsv = std::fs::read_to_string(out.join("classes.tsv")).unwrap();
    let wnids: Vec<&str> = tsv.lines().map(|l| l.split('\t').nth(1).unwrap()).collect();
    assert_eq!(wnids, data.info.wnids_sorted);
    // Val without the devkit is refused.
    let mut cfg = PreprocessConfig::new(tmp.path().join("out2"));
    cfg.val_tar = Some(data.val_tar.clone());
    let err = run(&cfg, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("--devkit"), "{err}");
}
