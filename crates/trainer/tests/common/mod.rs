//! A tiny learnable dataset in the layout of `cargo xtask preprocess`, and a
//! tiny network, for fast CPU tests.

#![allow(dead_code)]

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shards::{names, shard_file_name, ClassEntry, DatasetDir, Encoding, ShardWriter, Split};
use trainer::Architecture;

/// Image side of the tiny dataset.
pub const SIDE: usize = 72;
/// Crop / network input side.
pub const INPUT: usize = 64;
/// Classes of the tiny dataset.
pub const CLASSES: usize = 3;

/// Image of class `class`: dim noise, plus a bright square in the class's
/// colour channel at a random place.
fn image(class: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut img: Vec<u8> = (0..SIDE * SIDE * 3)
        .map(|_| rng.random_range(40..100u8))
        .collect();
    let size = 28;
    let y0 = rng.random_range(0..SIDE - size);
    let x0 = rng.random_range(0..SIDE - size);
    for y in y0..y0 + size {
        for x in x0..x0 + size {
            img[(y * SIDE + x) * 3 + class] = 230;
        }
    }
    img
}

fn write_shard(path: &Path, images: &[Vec<u8>], labels: &[i64]) {
    let mut writer = ShardWriter::create(path, SIDE, Encoding::Raw, images.len()).unwrap();
    for (i, (image, &label)) in images.iter().zip(labels).enumerate() {
        writer
            .push(image, label, &format!("img_{i:05}.JPEG"))
            .unwrap();
    }
    writer.finish(None).unwrap();
}

/// Writes `out/{train,val}/shard-00000.h5`, `out/stats.h5`, `out/classes.tsv`.
pub fn write_dataset(out: &Path, train_per_class: usize, val_per_class: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut mean = vec![0f64; SIDE * SIDE * 3];
    let data = DatasetDir::new(out);
    for (split, per_class) in [(Split::Train, train_per_class), (Split::Val, val_per_class)] {
        let dir = data.split(split);
        std::fs::create_dir_all(&dir).unwrap();
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..per_class * CLASSES {
            let class = i % CLASSES;
            let img = image(class, &mut rng);
            if split == Split::Train {
                for (m, &p) in mean.iter_mut().zip(&img) {
                    *m += p as f64;
                }
            }
            images.push(img);
            labels.push(class as i64);
        }
        write_shard(&dir.join(shard_file_name(0)), &images, &labels);
    }
    let n = (train_per_class * CLASSES) as f64;
    let mut stats = loader::Stats::neutral(SIDE, SIDE);
    stats.mean_image = mean.iter().map(|m| (m / n) as f32).collect();
    stats.rgb_mean = [128.0; 3];
    stats.eigvals = [0.2175, 0.0188, 0.0045];
    stats.eigvecs = [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ];
    stats.count = n as u64;
    shards::testing::write_stats(out, &stats).unwrap();
    let classes: Vec<ClassEntry> = ["red", "green", "blue"]
        .iter()
        .enumerate()
        .map(|(index, w)| ClassEntry {
            index,
            wnid: format!("n{:08}", 1000 + index),
            words: format!("{w} square"),
        })
        .collect();
    shards::write_classes(&data.classes(), &classes).unwrap();
}

/// A very small two-tower network for 64x64 inputs.
pub fn tiny_architecture() -> Architecture {
    Architecture {
        name: "tiny".into(),
        conv_channels: [8, 16, 16, 16, 8],
        fc_width: 64,
        single_tower: false,
        dropout: 0.5,
        input_size: INPUT,
        activation: model::Activation::Relu,
    }
}

/// A training configuration for the tiny dataset.
pub fn tiny_config(data: &Path, run: &Path) -> trainer::TrainConfig {
    let mut cfg = trainer::TrainConfig::paper(data, run, tiny_architecture());
    cfg.init = model::Init::PyTorch;
    cfg.batch_size = 8;
    cfg.epochs = 3;
    cfg.threads = 2;
    cfg.seed = 5;
    cfg.schedule = trainer::LrSchedule::plateau(0.03, 1);
    cfg
}

/// Overwrites training image `train_index` (and its label) with an exact
/// copy of validation image `val_index` of the dataset at `out` (raw shards:
/// overwriting a chunk in place keeps the `image_offsets` index valid).
pub fn plant_val_image_in_train(out: &Path, val_index: usize, train_index: usize) {
    let val = hdf5::File::open(DatasetDir::new(out).val().join(shard_file_name(0))).unwrap();
    let img: ndarray::Array4<u8> = val
        .dataset(names::IMAGES)
        .unwrap()
        .read_slice(ndarray::s![val_index..val_index + 1, .., .., ..])
        .unwrap();
    let label: ndarray::Array1<i64> = val
        .dataset(names::LABELS)
        .unwrap()
        .read_slice_1d(ndarray::s![val_index..val_index + 1])
        .unwrap();
    drop(val);
    let train = hdf5::File::open_rw(DatasetDir::new(out).train().join(shard_file_name(0))).unwrap();
    train
        .dataset(names::IMAGES)
        .unwrap()
        .write_slice(&img, ndarray::s![train_index..train_index + 1, .., .., ..])
        .unwrap();
    train
        .dataset(names::LABELS)
        .unwrap()
        .write_slice(&label, ndarray::s![train_index..train_index + 1])
        .unwrap();
}

/// Evaluation of the checkpoint in `run` on the validation split of `data`,
/// on the CPU, centre crop only.
pub fn eval_config(run: &Path, data: &Path) -> trainer::CheckpointEvalConfig {
    trainer::CheckpointEvalConfig {
        checkpoint: run.to_path_buf(),
        data_dir: Some(data.to_path_buf()),
        devices: trainer::Devices::default(),
        batch_size: 5,
        threads: 2,
        ten_crop: false,
    }
}
