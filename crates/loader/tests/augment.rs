//! Pixel-level checks of crops, flips, lighting and mean subtraction against
//! a direct computation on known pixel patterns.

mod common;

use common::{collect, mean_value, pixel, rgb_mean, Fixture, Storage, EIGVALS, EIGVECS, SIDE};
use loader::{Batch, LoaderConfig, MeanSubtraction, Mode, Output};

const CROP: usize = 24;

/// Source column shown at output column `i` of a view.
fn source_x(view: loader::CropInfo, i: usize) -> usize {
    source_x_in(view, i, CROP)
}

fn source_x_in(view: loader::CropInfo, i: usize, crop: usize) -> usize {
    if view.flipped {
        view.x as usize + crop - 1 - i
    } else {
        view.x as usize + i
    }
}

/// Checks every value of every view: `out = (pixel - mean + light) * scale`.
fn check_f32(batch: &Batch, mean: impl Fn(usize, usize, usize) -> f32, scale: f32) {
    check_f32_crop(batch, mean, scale, CROP)
}

fn check_f32_crop(
    batch: &Batch,
    mean: impl Fn(usize, usize, usize) -> f32,
    scale: f32,
    crop: usize,
) {
    let per_view = 3 * crop * crop;
    for (row, view) in batch.crops().iter().enumerate() {
        let index = batch.indices()[row / batch.views()];
        let light = batch.lighting()[row];
        let out = &batch.images()[row * per_view..][..per_view];
        for c in 0..3 {
            for r in 0..crop {
                for i in 0..crop {
                    let (sy, sx) = (view.y as usize + r, source_x_in(*view, i, crop));
                    let expect =
                        (pixel(index, sy, sx, c) as f32 - mean(sy, sx, c) + light[c]) * scale;
                    let got = out[(c * crop + r) * crop + i];
                    assert!(
                        (got - expect).abs() <= 1e-3 * expect.abs().max(1.0),
                        "image {index} view {row} c{c} r{r} i{i}: got {got}, expected {expect} ({view:?})"
                    );
                }
            }
        }
    }
}

fn train_cfg() -> LoaderConfig {
    LoaderConfig {
        batch_size: 5,
        threads: 2,
        crop: CROP,
        seed: 11,
        ..LoaderConfig::train()
    }
}

#[test]
fn random_crops_and_flips_show_the_right_source_pixels() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    let loader = fx.loader(LoaderConfig {
        lighting_std: 0.0,
        mean: MeanSubtraction::None,
        ..train_cfg()
    });
    let (mut flips, mut positions) = (0usize, std::collections::BTreeSet::new());
    let mut views = 0;
    for epoch in 0..4 {
        for batch in collect(loader.epoch(epoch).unwrap()) {
            assert_eq!(batch.shape(), [batch.len(), 3, CROP, CROP]);
            assert!(batch.lighting().iter().all(|l| *l == [0.0; 3]));
            for view in batch.crops() {
                assert!(
                    view.y as usize + CROP <= SIDE && view.x as usize + CROP <= SIDE,
                    "{view:?} out of bounds"
                );
                flips += view.flipped as usize;
                positions.insert((view.y, view.x));
                views += 1;
            }
            check_f32(&batch, |_, _, _| 0.0, 1.0);
        }
    }
    assert!(
        flips > views / 4 && flips < views * 3 / 4,
        "{flips} of {views} views flipped"
    );
    assert!(
        positions.len() > 20,
        "only {} distinct crop positions",
        positions.len()
    );
}

#[test]
fn mean_image_is_subtracted_at_the_same_source_pixels_and_lighting_is_added() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    let loader = fx.loader(train_cfg());
    for epoch in 0..2 {
        for batch in collect(loader.epoch(epoch).unwrap()) {
            check_f32(&batch, mean_value, 1.0);
        }
    }
}

#[test]
fn channel_mean_and_scale() {
    let fx = Fixture::new(&[7, 5], Storage::ChunkPerImage);
    let loader = fx.loader(LoaderConfig {
        mean: MeanSubtraction::Channel,
        scale: 0.5,
        ..train_cfg()
    });
    for batch in collect(loader.epoch(3).unwrap()) {
        check_f32(&batch, |_, _, c| rgb_mean(c) as f32, 0.5);
    }
}

/// The lighting offset of each view must be `255 * V (a ∘ λ)` with
/// `a ~ N(0, 0.1)`: recover `a = (Vᵀ offset / 255) / λ` (V is orthonormal)
/// and check its distribution.
#[test]
fn pca_lighting_follows_the_formula_with_normal_draws() {
    let fx = Fixture::new(&[7, 5, 9], Storage::ChunkPerImage);
    let loader = fx.loader(train_cfg());
    let mut draws: [Vec<f64>; 3] = Default::default();
    let mut per_image_use = std::collections::HashMap::new();
    for epoch in 0..15 {
        for batch in collect(loader.epoch(epoch).unwrap()) {
            for (k, light) in batch.lighting().iter().enumerate() {
                let a: Vec<f64> = (0..3)
                    .map(|j| {
                        (0..3).map(|c| EIGVECS[c][j] * light[c] as f64).sum::<f64>()
                            / 255.0
                            / EIGVALS[j]
                    })
                    .collect();
                // Rebuild the offset from `a` with the formula: must match.
                for (c, &l) in light.iter().enumerate() {
                    let rebuilt: f64 = 255.0
                        * (0..3)
                            .map(|j| EIGVECS[c][j] * a[j] * EIGVALS[j])
                            .sum::<f64>();
                    assert!((rebuilt - l as f64).abs() < 1e-3);
                }
                for j in 0..3 {
                    draws[j].push(a[j]);
                }
                per_image_use.insert((batch.indices()[k], epoch), *light);
            }
        }
    }
    for (j, d) in draws.iter().enumerate() {
        let n = d.len() as f64;
        let mean = d.iter().sum::<f64>() / n;
        let std = (d.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 0.025, "a{j}: mean {mean}");
        assert!(
            (0.085..0.115).contains(&std),
            "a{j}: std {std} over {n} draws, expected 0.1"
        );
    }
    // A new draw for every use: the same image gets different lighting in different epochs.
    let l0 = per_image_use[&(3, 0)];
    let l1 = per_image_use[&(3, 1)];
    assert_ne!(l0, l1);
}

#[test]
fn centre_crop_is_exact_and_unaugmented() {
    let fx = Fixture::new(&[7, 5], Storage::ChunkPerImage);
    let loader = fx.loader(LoaderConfig {
        batch_size: 4,
        crop: CROP,
        ..LoaderConfig::eval()
    });
    let batches = collect(loader.epoch(0).unwrap());
    assert_eq!(common::indices(&batches), (0..12).collect::<Vec<u64>>());
    for batch in &batches {
        for view in batch.crops() {
            assert_eq!(
                *view,
                loader::CropInfo {
                    y: 4,
                    x: 4,
                    flipped: false
                }
            );
        }
        check_f32(batch, mean_value, 1.0);
    }
}

#[test]
fn ten_crop_gives_corners_centre_and_their_mirrors() {
    let fx = Fixture::new(&[7, 5], Storage::ChunkPerImage);
    let loader = fx.loader(LoaderConfig {
        batch_size: 5,
        crop: CROP,
        mode: Mode::TenCrop,
        ..LoaderConfig::eval()
    });
    let m = (SIDE - CROP) as u32;
    let expected_views: Vec<(u32, u32, bool)> = vec![
        (0, 0, false),
        (0, m, false),
        (m, 0, false),
        (m, m, false),
        (m / 2, m / 2, false),
        (0, m, true),
        (0, 0, true),
        (m, m, true),
        (m, 0, true),
        (m / 2, m / 2, true),
    ];
    let batches = collect(loader.epoch(0).unwrap());
    assert_eq!(batches.len(), 3);
    for batch in &batches {
        assert_eq!(batch.views(), 10);
        assert_eq!(batch.labels().len(), batch.len());
        assert_eq!(batch.shape(), [batch.len() * 10, 3, CROP, CROP]);
        for (row, v) in batch.crops().iter().enumerate() {
            assert_eq!(
                (v.y, v.x, v.flipped),
                expected_views[row % 10],
                "view {row}"
            );
        }
        check_f32(batch, mean_value, 1.0);
        // View 5 is the mirror image of view 1 (top-right corner).
        let pv = 3 * CROP * CROP;
        let (v1, v5) = (&batch.images()[pv..2 * pv], &batch.images()[5 * pv..6 * pv]);
        for r in 0..CROP {
            for i in 0..CROP {
                assert_eq!(v1[r * CROP + i], v5[r * CROP + CROP - 1 - i]);
            }
        }
    }
}

#[test]
fn u8_outputs_hold_the_raw_crops_in_the_documented_layouts() {
    let fx = Fixture::new(&[7, 5], Storage::ChunkPerImage);
    let f32_batches = collect(fx.loader(train_cfg()).epoch(1).unwrap());
    for output in [Output::U8Nhwc, Output::U8Nchw] {
        let loader = fx.loader(LoaderConfig {
            output,
            ..train_cfg()
        });
        let batches = collect(loader.epoch(1).unwrap());
        for (b, fb) in batches.iter().zip(&f32_batches) {
            assert_eq!(b.crops(), fb.crops(), "same draws whatever the output type");
            assert_eq!(b.lighting(), fb.lighting());
            let data = b.images_u8();
            for (row, view) in b.crops().iter().enumerate() {
                let index = b.indices()[row];
                for r in 0..CROP {
                    for i in 0..CROP {
                        for c in 0..3 {
                            let at = match output {
                                Output::U8Nhwc => ((row * CROP + r) * CROP + i) * 3 + c,
                                _ => ((row * 3 + c) * CROP + r) * CROP + i,
                            };
                            assert_eq!(
                                data[at],
                                pixel(index, view.y as usize + r, source_x(*view, i), c)
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Crops whose rows are not a multiple of the vector width take the scalar
/// paths; they must give the same values.
#[test]
fn odd_crop_sizes_are_exact_too() {
    let fx = Fixture::new(&[7, 5], Storage::ChunkPerImage);
    for crop in [17, 21, 31] {
        let loader = fx.loader(LoaderConfig {
            crop,
            ..train_cfg()
        });
        for batch in collect(loader.epoch(0).unwrap()) {
            assert_eq!(batch.shape(), [batch.len(), 3, crop, crop]);
            check_f32_crop(&batch, mean_value, 1.0, crop);
        }
    }
}
