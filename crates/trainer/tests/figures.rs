//! The paper's figures from a tiny trained checkpoint: image sizes and
//! layouts, what is drawn where, and a planted exact duplicate of a
//! validation image found as its nearest training image in fc7.

mod common;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use loader::Split;
use trainer::figures::canvas::read_png;
use trainer::figures::curves::{self, draw_error_curves, RunCurve};
use trainer::figures::filters::{draw_filters, stretch_kernel, FiltersOptions};
use trainer::figures::neighbours::{draw_neighbours, NeighboursOptions};
use trainer::figures::predictions::{draw_predictions, PredictionsOptions, OTHER_RGB, TRUE_RGB};
use trainer::figures::{read_image, FigureSource};
use trainer::{evaluate_checkpoint, train, Checkpoint};

/// Validation image planted in the training set, and where.
const PLANTED_VAL: usize = 4;
const PLANTED_TRAIN: usize = 29;

#[test]
fn figures_of_a_tiny_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 4);
    common::plant_val_image_in_train(&data, PLANTED_VAL, PLANTED_TRAIN);
    let run = tmp.path().join("run");
    let mut cfg = common::tiny_config(&data, &run);
    cfg.epochs = 2;
    train(&cfg, &AtomicBool::new(false)).unwrap();
    let ck = Checkpoint::open(&run).unwrap();

    // Figure 3: conv1 kernels, tower A on top, tower B below.
    let out = tmp.path().join("filters.png");
    let fig = draw_filters(
        &ck,
        &out,
        &FiltersOptions {
            scale: 3,
            columns: 3,
        },
    )
    .unwrap();
    let png = read_png(&out).unwrap();
    assert_eq!(
        (png.width, png.height),
        (fig.layout.width(), fig.layout.height())
    );
    assert_eq!((fig.layout.towers, fig.layout.kernels), (2, 4));
    assert_eq!(fig.layout.rows(), 2);
    let params: HashMap<String, Tensor> =
        candle_core::safetensors::load(ck.params_path(), &Device::Cpu).unwrap();
    for (t, name) in ["tower_a.conv1.weight", "tower_b.conv1.weight"]
        .iter()
        .enumerate()
    {
        let w = params[*name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for k in [0, 3] {
            let kernel = stretch_kernel(&w[k * 363..(k + 1) * 363], 11);
            let (x, y) = fig.layout.kernel_origin(t, k);
            // weight (row 5, column 7) covers 3x3 screen pixels
            assert_eq!(png.pixel(x + 7 * 3 + 1, y + 5 * 3 + 2), kernel.pixel(7, 5));
            assert_eq!(png.pixel(x, y), kernel.pixel(0, 0));
        }
        assert!((0.0..0.48).contains(&fig.colourfulness[t]));
    }
    assert!(fig.summary().contains("tower A") && fig.summary().contains("tower B"));

    // Figure 4 (left): top-5 bars, the true class's in red.
    let src = FigureSource::open(&run, Some(&data), &trainer::Devices::default()).unwrap();
    let out = tmp.path().join("predictions.png");
    let picked = [0u64, 5, 7];
    let opts = PredictionsOptions {
        thumb: 40,
        columns: 2,
    };
    let fig = draw_predictions(&src, &picked, &out, &opts).unwrap();
    let png = read_png(&out).unwrap();
    assert_eq!(
        (png.width, png.height),
        (fig.layout.width(), fig.layout.height())
    );
    assert_eq!(fig.items.len(), 3);
    let val = src.split(Split::Val).unwrap();
    for (i, item) in fig.items.iter().enumerate() {
        assert_eq!(item.label as i64, val.label(picked[i]));
        // 3 classes: all of them are shown, most probable first
        assert_eq!(item.top.len(), common::CLASSES);
        assert!(item
            .top
            .windows(2)
            .all(|w| w[0].probability >= w[1].probability));
        let total: f32 = item.top.iter().map(|c| c.probability).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        for (rank, c) in item.top.iter().enumerate() {
            let (x, y) = fig.layout.bar_origin(i, rank);
            let want = if c.class == item.label {
                TRUE_RGB
            } else {
                OTHER_RGB
            };
            assert_eq!(png.pixel(x, y), want, "image {i} rank {rank}");
        }
        let (x, y) = fig.layout.image_origin(i);
        let thumb = read_image(&val, picked[i]).unwrap().resized(40, 40);
        assert_eq!(png.pixel(x + 10, y + 20), thumb.pixel(10, 20));
    }

    // Figure 4 (right): the planted duplicate is the nearest training image.
    let out = tmp.path().join("neighbours.png");
    let opts = NeighboursOptions {
        thumb: 32,
        batch_size: 7,
        ..NeighboursOptions::default()
    };
    let fig = draw_neighbours(
        &src,
        &[PLANTED_VAL as u64, 1],
        &out,
        &opts,
        &trainer::NoEvents,
    )
    .unwrap();
    let png = read_png(&out).unwrap();
    assert_eq!(
        (png.width, png.height),
        (fig.layout.width(), fig.layout.height())
    );
    assert_eq!(fig.train_images, 16 * common::CLASSES);
    let row = &fig.rows[0];
    assert_eq!(row.neighbours.len(), 6);
    assert_eq!(row.neighbours[0].index, PLANTED_TRAIN as u64);
    assert!(
        row.neighbours[0].distance < 1e-3,
        "{}",
        row.neighbours[0].distance
    );
    assert!(row.neighbours[1].distance > 100.0 * row.neighbours[0].distance.max(1e-6));
    for r in &fig.rows {
        assert!(r
            .neighbours
            .windows(2)
            .all(|w| w[0].distance <= w[1].distance));
    }
    // the duplicate is drawn as the first neighbour of the first row
    let train_ds = src.split(Split::Train).unwrap();
    let dup = read_image(&train_ds, PLANTED_TRAIN as u64)
        .unwrap()
        .resized(32, 32);
    let (x, y) = fig.layout.image_origin(0, 1);
    assert_eq!(png.pixel(x + 16, y + 8), dup.pixel(16, 8));
    let (x, y) = fig.layout.image_origin(0, 0);
    assert_eq!(png.pixel(x + 16, y + 8), dup.pixel(16, 8));

    // Figure 1: the run's training-error curve.
    let out = tmp.path().join("curves.png");
    let history = trainer::MetricsFiles::new(&run).read().unwrap();
    let curve = RunCurve {
        label: "tiny".into(),
        history,
    };
    draw_error_curves(&out, &[curve.clone(), curve], Some(25.0)).unwrap();
    let png = read_png(&out).unwrap();
    assert_eq!((png.width as u32, png.height as u32), curves::SIZE);

    // Per-class counts add up to the headline counts.
    let eval = evaluate_checkpoint(&common::eval_config(&run, &data), &trainer::NoEvents).unwrap();
    let c = &eval.centre;
    let sum = |f: fn(&trainer::ClassCounts) -> u64| c.per_class.counts.iter().map(f).sum::<u64>();
    assert_eq!(sum(|k| k.images), c.counter.images);
    assert_eq!(sum(|k| k.top1_correct), c.counter.top1_correct);
    assert_eq!(sum(|k| k.top5_correct), c.counter.top5_correct);
    assert!(c.per_class.counts.iter().all(|k| k.images == 4));
}
