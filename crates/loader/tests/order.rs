//! Epoch order, distributed sampling, determinism.

mod common;

use std::collections::BTreeSet;

use common::{collect, indices, Fixture, Storage};
use loader::{LoaderConfig, Mode};

fn cfg(batch_size: usize, threads: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        threads,
        crop: 24,
        seed: 5,
        ..LoaderConfig::train()
    }
}

#[test]
fn every_image_exactly_once_per_epoch_in_a_fresh_order_each_epoch() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    let loader = fx.loader(cfg(4, 2));
    assert_eq!(loader.batches_per_epoch(), 6);
    assert_eq!(loader.images_per_epoch(), 21);
    let mut orders = Vec::new();
    for epoch in 0..3 {
        let batches = collect(loader.epoch(epoch).unwrap());
        assert_eq!(batches.len(), 6);
        assert_eq!(
            batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [4, 4, 4, 4, 4, 1]
        );
        for (k, b) in batches.iter().enumerate() {
            assert_eq!(b.number(), k, "batches arrive in order");
            let ds = loader.dataset();
            assert_eq!(
                b.labels(),
                b.indices().iter().map(|&i| ds.label(i)).collect::<Vec<_>>()
            );
            assert_eq!(
                b.labels(),
                b.indices()
                    .iter()
                    .map(|&i| common::label(i))
                    .collect::<Vec<_>>()
            );
        }
        let order = indices(&batches);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..21).collect::<Vec<u64>>(),
            "epoch {epoch}: each image once"
        );
        assert_ne!(order, sorted, "epoch {epoch}: shuffled");
        assert_eq!(order, loader.epoch_indices(epoch));
        orders.push(order);
    }
    assert_ne!(orders[0], orders[1]);
    assert_ne!(orders[1], orders[2]);
}

#[test]
fn same_seed_gives_the_same_batches_and_another_seed_does_not() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    let a = collect(fx.loader(cfg(4, 2)).epoch(1).unwrap());
    let b = collect(fx.loader(cfg(4, 2)).epoch(1).unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.indices(), y.indices());
        assert_eq!(x.images(), y.images());
    }
    let c = collect(
        fx.loader(LoaderConfig {
            seed: 6,
            ..cfg(4, 2)
        })
        .epoch(1)
        .unwrap(),
    );
    assert_ne!(indices(&a), indices(&c));
}

#[test]
fn batches_are_identical_for_any_number_of_threads_and_when_built_alone() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    let reference = collect(fx.loader(cfg(3, 1)).epoch(2).unwrap());
    for threads in [2, 3, 5] {
        for prefetch in [0, 1, 4] {
            let loader = fx.loader(LoaderConfig {
                prefetch,
                ..cfg(3, threads)
            });
            let got = collect(loader.epoch(2).unwrap());
            assert_eq!(got.len(), reference.len());
            for (x, y) in got.iter().zip(&reference) {
                assert_eq!(x.indices(), y.indices(), "threads {threads}");
                assert_eq!(x.crops(), y.crops(), "threads {threads}");
                assert_eq!(x.images(), y.images(), "threads {threads}");
            }
        }
    }
    let loader = fx.loader(cfg(3, 2));
    let alone = loader.batch(2, 4).unwrap();
    assert_eq!(alone.images(), reference[4].images());
    assert_eq!(alone.indices(), reference[4].indices());
    assert!(loader.batch(2, 7).is_err());
}

#[test]
fn ranks_split_each_epoch_into_disjoint_equal_parts_padded_by_wrapping() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    for world in [2usize, 3, 4] {
        let mut all = Vec::new();
        let mut per_rank = Vec::new();
        for rank in 0..world {
            let loader = fx.loader(LoaderConfig {
                rank,
                world_size: world,
                ..cfg(2, 2)
            });
            let got = indices(&collect(loader.epoch(3).unwrap()));
            assert_eq!(got.len(), 21usize.div_ceil(world));
            assert_eq!(loader.images_per_epoch(), got.len());
            per_rank.push(got.len());
            all.extend(got);
        }
        assert!(per_rank.iter().all(|&n| n == per_rank[0]), "equal shares");
        let distinct: BTreeSet<u64> = all.iter().copied().collect();
        assert_eq!(
            distinct,
            (0..21).collect(),
            "world {world}: every image on some rank"
        );
        assert_eq!(
            all.len() - distinct.len(),
            per_rank[0] * world - 21,
            "only the padding repeats"
        );
    }
}

#[test]
fn drop_last_drops_the_uneven_tail_and_the_partial_batch() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    let mut seen = BTreeSet::new();
    for rank in 0..2 {
        let loader = fx.loader(LoaderConfig {
            drop_last: true,
            rank,
            world_size: 2,
            ..cfg(4, 2)
        });
        // 21 images / 2 ranks -> 10 each -> 2 full batches of 4.
        assert_eq!(loader.batches_per_epoch(), 2);
        assert_eq!(loader.images_per_epoch(), 8);
        let batches = collect(loader.epoch(0).unwrap());
        assert!(batches.iter().all(|b| b.len() == 4));
        for i in indices(&batches) {
            assert!(seen.insert(i), "image {i} on two ranks");
        }
    }
}

#[test]
fn eval_reads_in_stored_order_and_shuffle_off_keeps_order_in_training() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    for mode in [Mode::CenterCrop, Mode::TenCrop] {
        let loader = fx.loader(LoaderConfig {
            batch_size: 4,
            crop: 24,
            mode,
            ..LoaderConfig::eval()
        });
        assert_eq!(
            indices(&collect(loader.epoch(9).unwrap())),
            (0..21).collect::<Vec<u64>>()
        );
    }
    let loader = fx.loader(LoaderConfig {
        shuffle: false,
        ..cfg(4, 2)
    });
    assert_eq!(
        indices(&collect(loader.epoch(9).unwrap())),
        (0..21).collect::<Vec<u64>>()
    );
}

#[test]
fn empty_shards_are_skipped() {
    let fx = Fixture::new(&[3, 0, 4], Storage::ChunkPerImage);
    let ds = fx.dataset();
    assert_eq!(ds.len(), 7);
    assert_eq!(ds.num_shards(), 3);
    assert_eq!(ds.locate(3), (2, 0));
    let loader = fx.loader(cfg(2, 2));
    let mut got = indices(&collect(loader.epoch(0).unwrap()));
    got.sort();
    assert_eq!(got, (0..7).collect::<Vec<u64>>());
}
