//! Bad input reaches the caller as errors that name the file; nothing hangs.

mod common;

use std::time::Duration;

use common::{collect, Fixture, Storage};
use loader::{Dataset, DatasetDir, Loader, LoaderConfig, LoaderError, Stats};

fn cfg() -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        threads: 2,
        crop: 24,
        ..LoaderConfig::train()
    }
}

fn message<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn a_corrupt_shard_is_refused_naming_it() {
    let fx = Fixture::new(&[4, 4], Storage::ChunkPerImage);
    std::fs::write(&fx.shards[1], b"this is not an HDF5 file at all").unwrap();
    let msg = message(Dataset::open(&fx.train()));
    assert!(msg.contains("shard-00001.h5"), "{msg}");
}

#[test]
fn a_truncated_shard_is_refused_at_open_naming_it() {
    let fx = Fixture::new(&[4, 4], Storage::ChunkPerImage);
    let len = std::fs::metadata(&fx.shards[0]).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&fx.shards[0])
        .unwrap();
    f.set_len(len - 5000).unwrap();
    let msg = message(Dataset::open(&fx.train()));
    assert!(msg.contains("shard-00000.h5"), "{msg}");
}

#[test]
fn a_shard_truncated_after_opening_ends_the_epoch_with_an_error() {
    let fx = Fixture::new(&[8, 8], Storage::ChunkPerImage);
    let loader = fx.loader(LoaderConfig {
        shuffle: false,
        ..cfg()
    });
    // Cut the second shard down to its metadata: its images can no longer be read.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fx.shards[1])
        .unwrap()
        .set_len(4096)
        .unwrap();
    let results: Vec<_> = loader.epoch(0).unwrap().collect();
    assert_eq!(
        results.len(),
        3,
        "two good batches, then the error, then the end"
    );
    assert!(results[0].is_ok() && results[1].is_ok());
    let msg = results[2].as_ref().unwrap_err().to_string();
    assert!(
        msg.contains("shard-00001.h5") && msg.contains("image 0"),
        "{msg}"
    );
}

#[test]
fn missing_directories_files_and_datasets_are_reported() {
    let fx = Fixture::new(&[4], Storage::ChunkPerImage);
    assert!(matches!(
        Dataset::open(&fx.out().join("nope")),
        Err(LoaderError::Shard(loader::ShardError::Io { .. }))
    ));
    assert!(matches!(
        Dataset::open(fx.out()),
        Err(LoaderError::NoShards(_))
    ));
    assert!(message(Stats::open(&fx.out().join("missing.h5"))).contains("missing.h5"));
    assert!(
        message(loader::read_classes(&DatasetDir::new(fx.train()).classes()))
            .contains("classes.tsv")
    );

    // A shard without `labels`.
    let path = fx.train().join("shard-00001.h5");
    let file = hdf5::File::create(&path).unwrap();
    file.new_dataset::<u8>()
        .shape([1, common::SIDE, common::SIDE, 3])
        .create("images")
        .unwrap();
    drop(file);
    let msg = message(Dataset::open(&fx.train()));
    assert!(
        msg.contains("shard-00001.h5") && msg.contains("labels"),
        "{msg}"
    );
}

#[test]
fn a_shard_with_unwritten_images_is_refused() {
    let fx = Fixture::new(&[4], Storage::ChunkPerImage);
    let path = fx.train().join("shard-00001.h5");
    let file = hdf5::File::create(&path).unwrap();
    let s = common::SIDE;
    file.new_dataset::<u8>()
        .chunk([1, s, s, 3])
        .shape([3, s, s, 3])
        .create("images")
        .unwrap();
    file.new_dataset_builder()
        .with_data(&ndarray::arr1(&[0i64, 1, 2]))
        .create("labels")
        .unwrap();
    drop(file);
    let msg = message(Dataset::open(&fx.train()));
    assert!(
        msg.contains("shard-00001.h5") && msg.contains("0 of 3"),
        "{msg}"
    );
}

#[test]
fn the_class_table_is_read_and_checked() {
    let fx = Fixture::new(&[4], Storage::ChunkPerImage);
    let classes = loader::read_classes(&DatasetDir::new(fx.out()).classes()).unwrap();
    assert_eq!(classes.len(), common::CLASSES);
    assert_eq!(classes[1].index, 1);
    assert_eq!(classes[1].wnid, "n01440765");
    assert_eq!(classes[1].words, "thing 1, other name");
    std::fs::write(fx.out().join("classes.tsv"), "0\tn1\ta\n2\tn2\tb\n").unwrap();
    let msg = message(loader::read_classes(&DatasetDir::new(fx.out()).classes()));
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn statistics_are_read_with_their_shapes_checked() {
    let fx = Fixture::new(&[4], Storage::ChunkPerImage);
    let stats = fx.stats();
    assert_eq!(
        (stats.height, stats.width, stats.count),
        (common::SIDE, common::SIDE, 1234)
    );
    assert_eq!(stats.eigvals, common::EIGVALS);
    assert_eq!(stats.eigvecs, common::EIGVECS);
    assert_eq!(
        stats.mean_image[(3 * common::SIDE + 2) * 3 + 1],
        common::mean_value(3, 2, 1)
    );

    let file = hdf5::File::create(fx.stats_path()).unwrap();
    file.new_dataset_builder()
        .with_data(&ndarray::Array2::<f32>::zeros((4, 4)))
        .create("mean_image")
        .unwrap();
    drop(file);
    let msg = message(Stats::open(&fx.stats_path()));
    assert!(
        msg.contains("stats.h5") && msg.contains("mean_image"),
        "{msg}"
    );
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    let fx = Fixture::new(&[4, 3], Storage::ChunkPerImage);
    let bad = [
        LoaderConfig {
            batch_size: 0,
            ..cfg()
        },
        LoaderConfig {
            threads: 0,
            ..cfg()
        },
        LoaderConfig {
            rank: 2,
            world_size: 2,
            ..cfg()
        },
        LoaderConfig { crop: 33, ..cfg() },
        LoaderConfig {
            lighting_std: -1.0,
            ..cfg()
        },
        LoaderConfig {
            batch_size: 8,
            drop_last: true,
            ..cfg()
        },
    ];
    for c in bad {
        let r = Loader::new(fx.dataset(), fx.stats(), c.clone());
        assert!(matches!(r, Err(LoaderError::Config(_))), "{c:?}");
    }
    let r = Loader::new(fx.dataset(), Stats::neutral(64, 64), cfg());
    assert!(matches!(r, Err(LoaderError::Config(_))));
}

#[test]
fn dropping_an_epoch_midway_stops_and_joins_its_workers() {
    let fx = Fixture::new(&[40, 40], Storage::ChunkPerImage);
    let loader = fx.loader(LoaderConfig {
        batch_size: 2,
        threads: 3,
        prefetch: 4,
        ..cfg()
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for epoch in 0..5 {
            let mut e = loader.epoch(epoch).unwrap();
            let first = e.next().unwrap().unwrap();
            drop(e);
            drop(first);
        }
        // Holding batches while the epoch goes on must not stall it either.
        let held: Vec<_> = loader.epoch(9).unwrap().map(|b| b.unwrap()).collect();
        done_tx.send(held.len()).unwrap();
    });
    let held = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("dropping or holding batches hung the loader");
    assert_eq!(held, 40);
}

#[test]
fn other_storage_layouts_give_the_same_batches() {
    let reference = Fixture::new(&[7, 5], Storage::ChunkPerImage);
    assert!(reference.dataset().fallback_shards().is_empty());
    assert_eq!(reference.dataset().slow_read_warning(), None);
    let want = collect(reference.loader(cfg()).epoch(4).unwrap());
    for storage in [Storage::Contiguous, Storage::Shuffled, Storage::ChunksOf(3)] {
        let fx = Fixture::new(&[7, 5], storage);
        let fallback = fx.dataset().fallback_shards().len();
        assert_eq!(
            fallback,
            if storage == Storage::Contiguous { 0 } else { 2 },
            "{storage:?}"
        );
        if fallback > 0 {
            let warning = fx.dataset().slow_read_warning().unwrap();
            assert!(
                warning.starts_with("2 of 2 shard(s)") && warning.contains("shard-00000.h5"),
                "{warning}"
            );
        }
        let got = collect(fx.loader(cfg()).epoch(4).unwrap());
        for (x, y) in got.iter().zip(&want) {
            assert_eq!(x.images(), y.images(), "{storage:?}");
        }
    }
}

#[test]
fn names_and_whole_images_can_be_read() {
    let fx = Fixture::new(&[3, 4], Storage::ChunkPerImage);
    let ds = fx.dataset();
    assert_eq!(
        ds.name(5).unwrap(),
        format!("n{:08}_5.JPEG", common::label(5))
    );
    let mut img = vec![0u8; ds.image_bytes()];
    ds.read_image(5, &mut img).unwrap();
    assert_eq!(
        img[(7 * common::SIDE + 9) * 3 + 2],
        common::pixel(5, 7, 9, 2)
    );
}

#[test]
fn the_library_test_writer_matches_its_documented_pattern() {
    use shards::testing::{pattern_label, pattern_pixel, write_dataset, ShardSpec};
    let dir = tempfile::tempdir().unwrap();
    let spec = ShardSpec::small();
    write_dataset(dir.path(), &spec).unwrap();
    let ds = Dataset::open(&dir.path().join("train")).unwrap();
    assert_eq!(ds.len(), spec.total());
    let mut img = vec![0u8; ds.image_bytes()];
    ds.read_image(13, &mut img).unwrap();
    assert_eq!(img[(4 * spec.side + 6) * 3 + 1], pattern_pixel(13, 4, 6, 1));
    assert_eq!(ds.label(13), pattern_label(13, spec.num_classes));
    assert_eq!(
        Stats::open(&dir.path().join("stats.h5")).unwrap(),
        spec.stats()
    );
    assert_eq!(
        loader::read_classes(&DatasetDir::new(dir.path()).classes())
            .unwrap()
            .len(),
        spec.num_classes
    );
}
