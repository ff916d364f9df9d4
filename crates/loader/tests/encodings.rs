//! The shard encodings and the open-time index: a JPEG dataset gives exactly
//! the batches of a raw dataset holding its decoded images; shards with and
//! without the index read the same; a bad index or a cut file is refused.

use std::path::Path;

use loader::{Batch, Dataset, DatasetDir, Loader, LoaderConfig, LoaderError, Split, Stats};
use shards::testing::{
    pattern_image, pattern_label, pattern_name, stored_image, write_classes, write_split,
    write_stats, ImageStorage, ShardSpec,
};
use shards::{Encoding, ShardWriter};

const SIDE: usize = 48;

fn spec(storage: ImageStorage) -> ShardSpec {
    ShardSpec {
        images_per_shard: vec![6, 0, 5],
        side: SIDE,
        num_classes: 4,
        storage,
    }
}

fn loader_over(out: &Path, cfg: LoaderConfig) -> Loader {
    let spec = spec(ImageStorage::ChunkPerImage);
    let dataset = Dataset::open(&DatasetDir::new(out).train()).unwrap();
    Loader::new(dataset, spec.stats(), cfg).unwrap()
}

fn epoch(loader: &Loader, n: u64) -> Vec<Batch> {
    loader.epoch(n).unwrap().map(|b| b.unwrap()).collect()
}

fn train_cfg() -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        crop: 40,
        threads: 3,
        seed: 11,
        ..LoaderConfig::train()
    }
}

#[test]
fn jpeg_shards_give_the_batches_of_their_decoded_images() {
    let quality = 85;
    let jpeg_out = tempfile::tempdir().unwrap();
    write_split(
        jpeg_out.path(),
        Split::Train,
        &spec(ImageStorage::Jpeg(quality)),
    )
    .unwrap();

    // The same images, decoded once here, stored raw through the same writer.
    let raw_out = tempfile::tempdir().unwrap();
    let dir = DatasetDir::new(raw_out.path()).train();
    std::fs::create_dir_all(&dir).unwrap();
    let mut first = 0u64;
    for (s, &n) in spec(ImageStorage::ChunkPerImage)
        .images_per_shard
        .iter()
        .enumerate()
    {
        let path = dir.join(shards::shard_file_name(s as u64));
        let mut w = ShardWriter::create(&path, SIDE, Encoding::Raw, n).unwrap();
        for i in first..first + n as u64 {
            let decoded = stored_image(i, SIDE, ImageStorage::Jpeg(quality));
            w.push(&decoded, pattern_label(i, 4), &pattern_name(i))
                .unwrap();
        }
        w.finish(None).unwrap();
        first += n as u64;
    }

    let jpeg_ds = Dataset::open(&DatasetDir::new(jpeg_out.path()).train()).unwrap();
    assert!(jpeg_ds.is_encoded());
    assert_eq!(jpeg_ds.len(), 11);
    let streams: u64 = (0..11)
        .map(|i| {
            let mut b = Vec::new();
            Encoding::Jpeg { quality }
                .encode(&pattern_image(i, SIDE), SIDE, &mut b)
                .unwrap();
            b.len() as u64
        })
        .sum();
    assert_eq!(jpeg_ds.stored_image_bytes(), streams);
    assert_eq!(jpeg_ds.image_size(), (SIDE, SIDE));
    assert_eq!(jpeg_ds.name(7).unwrap(), pattern_name(7));
    let mut whole = vec![0u8; jpeg_ds.image_bytes()];
    jpeg_ds.read_image(7, &mut whole).unwrap();
    assert_eq!(whole, stored_image(7, SIDE, ImageStorage::Jpeg(quality)));
    assert_ne!(whole, pattern_image(7, SIDE), "JPEG is lossy on noise");
    // Rows alone, too.
    let mut rows = vec![0u8; 5 * SIDE * 3];
    jpeg_ds.read_rows(7, 20, 5, &mut rows).unwrap();
    assert_eq!(rows, whole[20 * SIDE * 3..25 * SIDE * 3]);

    for cfg in [
        train_cfg(),
        LoaderConfig {
            batch_size: 3,
            crop: 40,
            threads: 2,
            ..LoaderConfig::eval()
        },
    ] {
        let jpeg = epoch(&loader_over(jpeg_out.path(), cfg.clone()), 2);
        let raw = epoch(&loader_over(raw_out.path(), cfg), 2);
        assert_eq!(jpeg.len(), raw.len());
        for (a, b) in jpeg.iter().zip(&raw) {
            assert_eq!(a.labels(), b.labels());
            assert_eq!(a.crops(), b.crops());
            assert_eq!(a.images(), b.images());
        }
    }
}

#[test]
fn shards_with_and_without_the_index_read_the_same() {
    let indexed = tempfile::tempdir().unwrap();
    write_split(
        indexed.path(),
        Split::Train,
        &spec(ImageStorage::ChunkPerImage),
    )
    .unwrap();
    let legacy = tempfile::tempdir().unwrap();
    write_split(
        legacy.path(),
        Split::Train,
        &spec(ImageStorage::ChunkPerImageUnindexed),
    )
    .unwrap();
    let f = hdf5::File::open(
        DatasetDir::new(indexed.path())
            .train()
            .join("shard-00000.h5"),
    )
    .unwrap();
    assert_eq!(f.dataset(shards::names::IMAGE_OFFSETS).unwrap().size(), 6);
    let a = epoch(&loader_over(indexed.path(), train_cfg()), 0);
    let b = epoch(&loader_over(legacy.path(), train_cfg()), 0);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.images(), y.images());
    }
}

fn message<T: std::fmt::Debug>(r: Result<T, LoaderError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn an_index_that_disagrees_with_the_chunks_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let paths = write_split(out.path(), Split::Train, &spec(ImageStorage::ChunkPerImage)).unwrap();
    {
        let f = hdf5::File::open_rw(&paths[2]).unwrap();
        let ds = f.dataset(shards::names::IMAGE_OFFSETS).unwrap();
        let mut offsets: Vec<u64> = ds.read_raw().unwrap();
        offsets.reverse();
        ds.write_raw(&offsets).unwrap();
    }
    // The user-block index is read first and still describes the images.
    let ds = Dataset::open(&DatasetDir::new(out.path()).train()).unwrap();
    let mut img = vec![0u8; ds.image_bytes()];
    // Shard 2's second image, which the reversed offsets would swap.
    ds.read_image(6 + 1, &mut img).unwrap();
    assert_eq!(img, pattern_image(6 + 1, SIDE));
    // Without it, the HDF5 datasets are read and checked.
    shards::clear_index(&paths[2]).unwrap();
    let msg = message(Dataset::open(&DatasetDir::new(out.path()).train()));
    assert!(
        msg.contains("shard-00002.h5") && msg.contains("image_offsets"),
        "{msg}"
    );
}

#[test]
fn cut_jpeg_shards_are_refused_at_open_or_read_naming_the_file() {
    let out = tempfile::tempdir().unwrap();
    let paths = write_split(out.path(), Split::Train, &spec(ImageStorage::Jpeg(90))).unwrap();
    let len = std::fs::metadata(&paths[0]).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&paths[0])
        .unwrap();
    file.set_len(len / 2).unwrap();
    let msg = message(Dataset::open(&DatasetDir::new(out.path()).train()));
    assert!(msg.contains("shard-00000.h5"), "{msg}");

    // A stream damaged in place is found when the image is decoded.
    let out = tempfile::tempdir().unwrap();
    let paths = write_split(out.path(), Split::Train, &spec(ImageStorage::Jpeg(90))).unwrap();
    let ds = Dataset::open(&DatasetDir::new(out.path()).train()).unwrap();
    let (base, start) = {
        let f = hdf5::File::open(&paths[2]).unwrap();
        let offsets: Vec<u64> = f
            .dataset(shards::names::JPEG_OFFSETS)
            .unwrap()
            .read_raw()
            .unwrap();
        (
            f.dataset(shards::names::JPEG).unwrap().offset().unwrap(),
            offsets[1],
        )
    };
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&paths[2])
            .unwrap();
        // Overwrite the start of image 1's stream (its SOI marker).
        f.write_all_at(&[0u8; 16], base + start).unwrap();
    }
    let mut img = vec![0u8; ds.image_bytes()];
    let msg = message(ds.read_image(6 + 1, &mut img));
    assert!(
        msg.contains("shard-00002.h5") && msg.contains("image 1"),
        "{msg}"
    );
}

#[test]
fn the_writer_keeps_nothing_behind_when_abandoned_and_renames_when_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(shards::shard_file_name(3));
    let mut w = ShardWriter::create(&path, 8, Encoding::jpeg(), 4).unwrap();
    assert_eq!(w.encoding(), Encoding::Jpeg { quality: 90 });
    let mut bytes = Vec::new();
    Encoding::jpeg()
        .encode(&pattern_image(0, 8), 8, &mut bytes)
        .unwrap();
    w.push(&bytes, 1, "a.JPEG").unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "tmp + spill"
    );
    w.abandon();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let mut w = ShardWriter::create(&path, 8, Encoding::Raw, 1).unwrap();
    for i in 0..3 {
        w.push(&pattern_image(i, 8), i as i64, "x").unwrap();
    }
    w.push_skipped("bad.JPEG", "not a JPEG");
    let sums = shards::ShardSums {
        pixel_sum: (0..8 * 8 * 3).collect(),
        rgb_sum: [1, 2, 3],
        rgb_outer_sum: [4, 5, 6, 5, 7, 8, 6, 8, 9],
        count: 3,
    };
    let returned = w.finish(Some(sums.clone())).unwrap();
    assert_eq!(returned.path, path);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [shards::shard_file_name(3).as_str()]);
    let record = shards::read_shard_record(&path).unwrap();
    assert_eq!(record.images, 3);
    assert_eq!(
        record.skipped,
        [("bad.JPEG".to_string(), "not a JPEG".to_string())]
    );
    assert_eq!(record.sums, Some(sums));
    assert_eq!(record, returned, "finish returns what the file records");
}

#[test]
fn stats_and_classes_round_trip_through_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(ImageStorage::ChunkPerImage);
    write_stats(dir.path(), &spec.stats()).unwrap();
    assert_eq!(
        Stats::open(&DatasetDir::new(dir.path()).stats()).unwrap(),
        spec.stats()
    );
    write_classes(dir.path(), 3).unwrap();
    let classes = loader::read_classes(&DatasetDir::new(dir.path()).classes()).unwrap();
    assert_eq!(classes[2].wnid, "n01000002");
}

/// Labels, where each image lies and the images themselves, through the
/// open-time index and through HDF5 (the same files with the index cleared).
#[test]
fn the_user_block_index_and_hdf5_describe_the_same_shards() {
    for storage in [ImageStorage::ChunkPerImage, ImageStorage::Jpeg(90)] {
        let indexed = tempfile::tempdir().unwrap();
        write_split(indexed.path(), Split::Train, &spec(storage)).unwrap();
        let plain = tempfile::tempdir().unwrap();
        for path in write_split(plain.path(), Split::Train, &spec(storage)).unwrap() {
            shards::clear_index(&path).unwrap();
            let f = hdf5::File::open(&path).unwrap();
            assert!(f.userblock() >= 512, "the block stays reserved");
        }
        let a = Dataset::open(&DatasetDir::new(indexed.path()).train()).unwrap();
        let b = Dataset::open(&DatasetDir::new(plain.path()).train()).unwrap();
        assert_eq!(a.len(), b.len());
        assert_eq!(a.labels(), b.labels());
        assert_eq!(a.stored_image_bytes(), b.stored_image_bytes());
        let (mut x, mut y) = (vec![0u8; a.image_bytes()], vec![0u8; b.image_bytes()]);
        for i in 0..a.len() {
            a.read_image(i as u64, &mut x).unwrap();
            b.read_image(i as u64, &mut y).unwrap();
            assert_eq!(x, y, "{storage:?} image {i}");
            assert_eq!(
                x,
                stored_image(i as u64, SIDE, storage),
                "{storage:?} image {i}"
            );
        }
        // h5py and other HDF5 readers see the datasets as usual.
        let f = hdf5::File::open(
            DatasetDir::new(indexed.path())
                .train()
                .join("shard-00002.h5"),
        )
        .unwrap();
        let labels: Vec<i64> = f
            .dataset(shards::names::LABELS)
            .unwrap()
            .read_raw()
            .unwrap();
        assert_eq!(labels, &a.labels()[6..11]);
    }
}

#[test]
fn a_damaged_index_is_refused_naming_the_file() {
    let out = tempfile::tempdir().unwrap();
    let paths = write_split(out.path(), Split::Train, &spec(ImageStorage::Jpeg(90))).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&paths[2])
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 60).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], 60).unwrap();
    }
    let msg = message(Dataset::open(&DatasetDir::new(out.path()).train()));
    assert!(
        msg.contains("shard-00002.h5") && msg.contains("shard index") && msg.contains("checksum"),
        "{msg}"
    );
}

/// A raw shard that grew past the capacity it was created with has no room
/// for its index: it is opened through HDF5, at the right offsets.
#[test]
fn a_shard_past_its_capacity_is_opened_through_hdf5() {
    let out = tempfile::tempdir().unwrap();
    let dir = DatasetDir::new(out.path()).train();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(shards::shard_file_name(0));
    let mut w = ShardWriter::create(&path, SIDE, Encoding::Raw, 1).unwrap();
    for i in 0..40 {
        w.push(&pattern_image(i, SIDE), i as i64 % 4, &pattern_name(i))
            .unwrap();
    }
    w.finish(None).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap()[..8],
        [0u8; 8],
        "no index: the user block is left empty"
    );
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.len(), 40);
    let mut img = vec![0u8; ds.image_bytes()];
    for i in [0, 17, 39] {
        ds.read_image(i, &mut img).unwrap();
        assert_eq!(img, pattern_image(i, SIDE));
    }
}
