//! The generator writes the exact ImageNet layout, and its odd files are
//! what they claim to be.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use synth::{generate, generate_trees, OddKind, SynthConfig};

fn small_cfg() -> SynthConfig {
    SynthConfig {
        classes: 4,
        train_per_class: 5,
        val_images: 18,
        min_side: 40,
        max_side: 72,
        plant_odd_files: true,
        seed: 7,
        ..SynthConfig::default()
    }
}

/// (member name, bytes) of every regular file of a tar.
fn members<R: Read>(r: R) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().to_string();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.push((name, b));
    }
    out
}

fn open(p: &Path) -> std::fs::File {
    std::fs::File::open(p).unwrap()
}

#[test]
fn writes_the_three_imagenet_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_cfg();
    let ds = generate(dir.path(), &cfg).unwrap();
    assert_eq!(ds.train_tar, dir.path().join("ILSVRC2012_img_train.tar"));
    assert_eq!(ds.val_tar, dir.path().join("ILSVRC2012_img_val.tar"));
    assert_eq!(ds.devkit, dir.path().join("ILSVRC2012_devkit_t12.tar.gz"));

    // Outer train tar: one inner tar per class, named <wnid>.tar, not in
    // sorted order; inner members <wnid>_<n>.JPEG.
    let outer = members(open(&ds.train_tar));
    let inner_names: Vec<&str> = outer.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = inner_names.clone();
    sorted.sort();
    let expected: Vec<String> = ds.wnids_sorted.iter().map(|w| format!("{w}.tar")).collect();
    assert_eq!(sorted, expected);
    let mut train_total = 0;
    for (name, bytes) in &outer {
        let wnid = name.strip_suffix(".tar").unwrap();
        let inner = members(bytes.as_slice());
        assert_eq!(inner.len(), cfg.train_per_class);
        for (m, _) in &inner {
            let rest = m.strip_prefix(&format!("{wnid}_")).unwrap();
            let num = rest.strip_suffix(".JPEG").unwrap();
            assert!(num.parse::<u32>().is_ok(), "{m}");
        }
        train_total += inner.len();
    }
    assert_eq!(train_total, ds.train_count);
    assert_eq!(ds.train_count, 20);

    // Val tar: flat, numbered from 1 in order.
    let val = members(open(&ds.val_tar));
    assert_eq!(val.len(), ds.val_count);
    for (i, (name, _)) in val.iter().enumerate() {
        assert_eq!(name, &format!("ILSVRC2012_val_{:08}.JPEG", i + 1));
    }
    assert_eq!(ds.val_labels.len(), 18);

    // Devkit: members under a top directory.
    let gz = flate2::read::GzDecoder::new(open(&ds.devkit));
    let dk: Vec<String> = members(gz).into_iter().map(|(n, _)| n).collect();
    assert!(dk.contains(&"ILSVRC2012_devkit_t12/data/meta.mat".to_string()));
    assert!(dk.contains(
        &"ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt".to_string()
    ));

    // Each split holds one file of every kind; 4 broken in each.
    assert_eq!(ds.odd.len(), 18);
    assert_eq!(ds.broken.len(), 8);
    assert_eq!(ds.decodable_train_count(), 16);
    assert_eq!(ds.decodable_val_count(), 14);
}

fn sof(bytes: &[u8]) -> Option<(u8, u8)> {
    // (SOF marker, number of components), walking the marker segments.
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let m = bytes[i + 1];
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if matches!(m, 0xC0..=0xC3) {
            return bytes.get(i + 9).map(|&n| (m, n));
        }
        if m == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

fn adobe_transform(bytes: &[u8]) -> Option<u8> {
    let pos = bytes
        .windows(9)
        .position(|w| w[0] == 0xFF && w[1] == 0xEE && &w[4..9] == b"Adobe")?;
    // FF EE len(2) "Adobe" version(2) flags0(2) flags1(2) transform(1)
    bytes.get(pos + 4 + 5 + 6).copied()
}

fn check_odd(name: &str, kind: OddKind, b: &[u8]) {
    let is_jpeg = b.starts_with(&[0xFF, 0xD8]);
    match kind {
        OddKind::Grayscale => assert_eq!(sof(b), Some((0xC0, 1)), "{name}"),
        OddKind::Cmyk => {
            assert_eq!(sof(b), Some((0xC0, 4)), "{name}");
            assert_eq!(adobe_transform(b), Some(0), "{name}");
        }
        OddKind::Ycck => {
            assert_eq!(sof(b), Some((0xC0, 4)), "{name}");
            assert_eq!(adobe_transform(b), Some(2), "{name}");
        }
        OddKind::Progressive => assert_eq!(sof(b), Some((0xC2, 3)), "{name}"),
        OddKind::PngNamedJpeg => {
            assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}");
            assert!(name.ends_with(".JPEG"));
        }
        OddKind::TruncatedJpeg => {
            assert!(is_jpeg, "{name}");
            assert!(
                !b.windows(2).any(|w| w == [0xFF, 0xDA]),
                "{name} has scan data"
            );
        }
        OddKind::Empty => assert!(b.is_empty(), "{name}"),
        OddKind::NotAnImage => {
            assert!(!is_jpeg && !b.starts_with(b"\x89PNG"));
            assert!(std::str::from_utf8(b).is_ok(), "{name}");
        }
        OddKind::RandomBytes => {
            assert!(
                !is_jpeg && !b.starts_with(b"\x89PNG") && b.len() > 100,
                "{name}"
            );
        }
    }
}

#[test]
fn odd_files_are_what_they_claim() {
    let dir = tempfile::tempdir().unwrap();
    let ds = generate(dir.path(), &small_cfg()).unwrap();
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, inner) in members(open(&ds.train_tar)) {
        files.extend(members(inner.as_slice()));
    }
    files.extend(members(open(&ds.val_tar)));

    let mut seen: HashMap<OddKind, usize> = HashMap::new();
    for (name, kind) in &ds.odd {
        check_odd(name, *kind, &files[name]);
        *seen.entry(*kind).or_default() += 1;
        assert_eq!(ds.broken.contains(name), !kind.is_decodable());
    }
    for kind in OddKind::all() {
        assert_eq!(seen.get(&kind), Some(&2), "{kind:?} once per split");
    }
    // Every other file is a baseline three-component JPEG.
    let odd_names: Vec<&String> = ds.odd.iter().map(|(n, _)| n).collect();
    for (name, b) in &files {
        if !odd_names.contains(&name) {
            assert_eq!(sof(b), Some((0xC0, 3)), "{name}");
        }
    }
}

#[test]
fn odd_files_decode_to_the_same_picture() {
    // The CMYK, YCCK, progressive and PNG files hold the picture a normal
    // file would: with plant_odd_files off the same slot is a plain JPEG.
    let dir_odd = tempfile::tempdir().unwrap();
    let dir_plain = tempfile::tempdir().unwrap();
    let odd = generate_trees(dir_odd.path(), &small_cfg()).unwrap();
    let plain_cfg = SynthConfig {
        plant_odd_files: false,
        ..small_cfg()
    };
    let plain = generate_trees(dir_plain.path(), &plain_cfg).unwrap();
    assert_eq!(odd.wnids_sorted, plain.wnids_sorted);
    assert_eq!(odd.val_labels, plain.val_labels);

    let decode_jpeg = |b: &[u8]| {
        let mut d = zune_jpeg::JpegDecoder::new(std::io::Cursor::new(b));
        let px = d.decode().unwrap();
        let (w, h) = d.dimensions().unwrap();
        (px, w, h)
    };
    let path_of = |root: &Path, name: &str| {
        if name.starts_with("ILSVRC2012_val_") {
            root.join("val").join(name)
        } else {
            root.join("train").join(&name[..9]).join(name)
        }
    };
    for (name, kind) in &odd.odd {
        if !matches!(kind, OddKind::Cmyk | OddKind::Ycck | OddKind::Progressive) {
            continue;
        }
        let a = std::fs::read(path_of(dir_odd.path(), name)).unwrap();
        let b = std::fs::read(path_of(dir_plain.path(), name)).unwrap();
        let (pa, wa, ha) = decode_jpeg(&a);
        let (pb, wb, hb) = decode_jpeg(&b);
        assert_eq!((wa, ha), (wb, hb));
        assert_eq!(pa.len(), pb.len(), "{name}: RGB output expected");
        let mean_diff = pa
            .iter()
            .zip(&pb)
            .map(|(&x, &y)| (x as f64 - y as f64).abs())
            .sum::<f64>()
            / pa.len() as f64;
        assert!(
            mean_diff < 6.0,
            "{name} ({kind:?}): mean |diff| {mean_diff:.2}"
        );
    }
}

#[test]
fn same_seed_same_bytes_and_trees_match_tars() {
    let cfg = SynthConfig {
        plant_odd_files: true,
        ..SynthConfig::default()
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let t = tempfile::tempdir().unwrap();
    let da = generate(a.path(), &cfg).unwrap();
    let db = generate(b.path(), &cfg).unwrap();
    for (x, y) in [
        (&da.train_tar, &db.train_tar),
        (&da.val_tar, &db.val_tar),
        (&da.devkit, &db.devkit),
    ] {
        assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
    }
    let trees = generate_trees(t.path(), &cfg).unwrap();
    assert_eq!(trees.info, da.info);
    for (wnid_tar, inner) in members(open(&da.train_tar)) {
        let wnid = wnid_tar.strip_suffix(".tar").unwrap();
        for (name, bytes) in members(inner.as_slice()) {
            let on_disk = std::fs::read(trees.train_dir.join(wnid).join(&name)).unwrap();
            assert_eq!(on_disk, bytes, "{name}");
        }
    }
    for (name, bytes) in members(open(&da.val_tar)) {
        assert_eq!(std::fs::read(trees.val_dir.join(&name)).unwrap(), bytes);
    }
    let count = std::fs::read_dir(&trees.val_dir).unwrap().count();
    assert_eq!(count, trees.val_count);

    let other = SynthConfig { seed: 1, ..cfg };
    let c = tempfile::tempdir().unwrap();
    let dc = generate(c.path(), &other).unwrap();
    assert_ne!(dc.wnids_sorted, da.wnids_sorted);
}

#[test]
fn quickstart_classes_look_different() {
    let cfg = SynthConfig::quickstart();
    let dir = tempfile::tempdir().unwrap();
    let small = SynthConfig {
        train_per_class: 2,
        val_images: 10,
        min_side: 16,
        max_side: 16,
        plant_odd_files: false,
        ..cfg
    };
    let ds = generate(dir.path(), &small).unwrap();
    let mut words = ds.words.clone();
    words.sort();
    words.dedup();
    assert_eq!(words.len(), 10, "{:?}", ds.words);
}

#[test]
fn bad_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        SynthConfig {
            classes: 0,
            ..SynthConfig::default()
        },
        SynthConfig {
            min_side: 300,
            max_side: 200,
            ..SynthConfig::default()
        },
        SynthConfig {
            train_per_class: 1,
            plant_odd_files: true,
            ..SynthConfig::default()
        },
        SynthConfig {
            val_images: 3,
            plant_odd_files: true,
            ..SynthConfig::default()
        },
    ] {
        let err = generate(dir.path(), &cfg).unwrap_err();
        assert!(err.to_string().contains("config"), "{err}");
    }
}
