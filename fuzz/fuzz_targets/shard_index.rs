//! `shards::open_shard_indexed` on a file: the open-time index in the
//! shard's user block. Mode byte: bit 0 set, the target repairs the index's
//! CRC first (so that mutations reach the fields behind it). A shard that
//! opens has consistent lengths, and its first images read (or fail with
//! an error) through the positioned reads the loader uses.

#![no_main]

use alexnet_fuzz::{fix_index_crc, scratch_file};
use libfuzzer_sys::fuzz_target;
use shards::ImageSource;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        fix_index_crc(&mut bytes);
    }
    let path = scratch_file("shard.h5", &bytes);
    let shard = match shards::open_shard_indexed(&path) {
        Ok(Some(shard)) => shard,
        Ok(None) => return,
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&*path.to_string_lossy()), "{text}");
            return;
        }
    };
    assert_eq!(shard.labels.len(), shard.len);
    assert!(shard.labels.iter().all(|&l| l >= 0));
    match &shard.source {
        ImageSource::Raw { offsets, .. } => assert_eq!(offsets.len(), shard.len),
        ImageSource::Jpeg { offsets, .. } => assert_eq!(offsets.len(), shard.len + 1),
        ImageSource::Hdf5 { .. } => panic!("an indexed open never goes through HDF5"),
    }
    let (h, w) = (shard.height, shard.width);
    let image_bytes = h.saturating_mul(w).saturating_mul(3);
    let _ = shard.source.stored_bytes(shard.len, image_bytes);
    if image_bytes == 0 || image_bytes > 1 << 20 {
        return;
    }
    let mut buf = vec![0u8; image_bytes];
    for local in 0..shard.len.min(4) {
        let _ = shard
            .source
            .read_rows(&path, (local, local as u64), (h, w), 0, h, &mut buf);
    }
});
