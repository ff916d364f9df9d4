//! `scan_tar` reads the official tars as the pipeline does, and damaged
//! tars found by fuzzing give errors that name the file, never a panic or
//! an allocation the file cannot justify.

use preprocess::{scan_tar, Split, TarMember, MAX_MEMBER_BYTES};

#[path = "support/largest_allocation.rs"]
mod largest_allocation;

use largest_allocation::largest_of;

fn synth_tars(dir: &std::path::Path) -> synth::SynthDataset {
    let cfg = synth::SynthConfig {
        classes: 3,
        train_per_class: 2,
        val_images: 4,
        min_side: 8,
        max_side: 12,
        ..synth::SynthConfig::default()
    };
    synth::generate(dir, &cfg).unwrap()
}

#[test]
fn the_official_layouts_are_listed_in_order_with_their_classes() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth_tars(dir.path());
    let train = scan_tar(&ds.train_tar, Split::Train).unwrap();
    assert_eq!(train.len(), ds.info.train_count);
    for m in &train {
        let wnid = m.class.as_deref().expect("a train member has its class");
        assert!(ds.info.wnids_sorted.iter().any(|w| w == wnid), "{m:?}");
        assert!(m.name.starts_with(wnid), "{m:?}");
        assert!(matches!(m.size, Ok(n) if n > 0), "{m:?}");
    }
    let val = scan_tar(&ds.val_tar, Split::Val).unwrap();
    assert_eq!(val.len(), ds.info.val_count);
    assert_eq!(val[0].name, "ILSVRC2012_val_00000001.JPEG");
    assert!(val.iter().all(|m| m.class.is_none() && m.size.is_ok()));
}

#[test]
fn a_truncated_tar_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth_tars(dir.path());
    for (tar, split) in [(&ds.train_tar, Split::Train), (&ds.val_tar, Split::Val)] {
        let bytes = std::fs::read(tar).unwrap();
        let cut = dir.path().join("cut.tar");
        std::fs::write(&cut, &bytes[..bytes.len() / 2 + 100]).unwrap();
        let err = scan_tar(&cut, split).unwrap_err().to_string();
        assert!(err.contains("cut.tar"), "{err}");
    }
}

#[test]
fn a_train_member_that_is_not_a_class_tar_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "README", &b"hello"[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    let members = scan_tar(&path, Split::Train).unwrap();
    assert_eq!(
        members,
        vec![TarMember {
            name: "README".into(),
            class: None,
            size: Err("not a per-class .tar in the train tar".into()),
        }]
    );
}

/// Found by fuzzing: a member whose header claims up to
/// `MAX_MEMBER_BYTES` (256 MiB) had that much reserved before its bytes
/// were read, in a tar of a few kilobytes.
#[test]
fn a_member_claiming_more_than_the_file_holds_reserves_little() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("val.tar");
    let mut h = tar::Header::new_gnu();
    h.set_path("ILSVRC2012_val_00000001.JPEG").unwrap();
    h.set_mode(0o644);
    h.set_size(MAX_MEMBER_BYTES - 1);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(&[0xFF; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    let (largest, err) = largest_of(|| scan_tar(&path, Split::Val).unwrap_err().to_string());
    assert!(
        err.contains("val.tar") && err.contains("truncated"),
        "{err}"
    );
    assert!(largest <= 2 << 20, "{largest} bytes allocated at once");
}
