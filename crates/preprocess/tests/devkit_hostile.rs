//! Damaged devkits found by fuzzing (`fuzz/`, target `devkit`): each is an
//! error that names the file, never a panic or an allocation the file cannot
//! justify.

use std::io::Write;

use preprocess::{read_devkit, DevkitError, MAX_DEVKIT_MEMBER_BYTES};

/// A tar.gz holding one header for `name` that claims `size` bytes, followed
/// by a few bytes of data (the archive ends early).
fn claiming(name: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[7u8; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Found by fuzzing: the reader reserved the member's size as its header
/// claims it; a claim past `isize::MAX` panicked ("capacity overflow"), a
/// claim of gigabytes reserved gigabytes.
#[test]
fn a_member_claiming_more_than_a_devkit_file_holds_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ILSVRC2012_devkit_t12.tar.gz");
    for size in [u64::MAX >> 1, 8 << 30, MAX_DEVKIT_MEMBER_BYTES + 1] {
        std::fs::write(&path, claiming("ILSVRC2012_devkit_t12/data/meta.mat", size)).unwrap();
        let err = read_devkit(&path).unwrap_err();
        assert!(
            matches!(&err, DevkitError::MemberTooLarge { size: s, .. } if *s == size),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("ILSVRC2012_devkit_t12.tar.gz") && text.contains("data/meta.mat"),
            "{text}"
        );
    }
    // Within the bound, the missing bytes are a truncated archive.
    std::fs::write(&path, claiming("ILSVRC2012_devkit_t12/data/meta.mat", 4096)).unwrap();
    let err = read_devkit(&path).unwrap_err();
    assert!(matches!(err, DevkitError::BadArchive { .. }), "{err}");
}
