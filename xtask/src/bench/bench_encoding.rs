//! `cargo xtask bench encoding`: what the JPEG encoding costs and saves,
//! from two preprocess outputs of the same inputs (`--encoding raw` and
//! `--encoding jpeg`): bytes per image, the projected size of ImageNet's
//! training set, the pixel difference from raw, and single-thread read (and
//! decode) rates.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::Args as ClapArgs;
use loader::{Dataset, DatasetDir, Split};

/// Images in ImageNet's (ILSVRC-2012) training set.
const IMAGENET_TRAIN_IMAGES: f64 = 1_281_167.0;
/// Default of `--images`: all.
const DEFAULT_IMAGES: usize = 0;

#[derive(ClapArgs)]
pub struct Args {
    /// Preprocess output written with `--encoding raw`.
    #[arg(long)]
    raw: PathBuf,
    /// Preprocess output of the same inputs written with `--encoding jpeg`.
    #[arg(long)]
    jpeg: PathBuf,
    /// Split to compare.
    #[arg(long, default_value_t = Split::Train)]
    split: Split,
    /// Compare at most this many images (evenly spaced); 0 = all.
    #[arg(long, default_value_t = DEFAULT_IMAGES)]
    images: usize,
}

/// Bytes of the shard files of a split.
fn shard_bytes(split_dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for (_, path) in shards::list_shards(split_dir)? {
        total += std::fs::metadata(&path)
            .with_context(|| path.display().to_string())?
            .len();
    }
    Ok(total)
}

/// The mean, RMS (and PSNR), 99th percentile and largest of the pixel
/// differences counted in `histogram` over `images` images.
fn print_pixel_difference(histogram: &[u64; 256], images: usize) {
    let values: u64 = histogram.iter().sum();
    let mean = histogram
        .iter()
        .enumerate()
        .map(|(d, &c)| d as f64 * c as f64)
        .sum::<f64>()
        / values as f64;
    let mse = histogram
        .iter()
        .enumerate()
        .map(|(d, &c)| (d * d) as f64 * c as f64)
        .sum::<f64>()
        / values as f64;
    let quantile = |q: f64| {
        let mut seen = 0;
        for (d, &c) in histogram.iter().enumerate() {
            seen += c;
            if seen as f64 >= q * values as f64 {
                return d;
            }
        }
        255
    };
    let max = histogram.iter().rposition(|&c| c > 0).unwrap_or(0);
    println!(
        "pixel difference over {} images: mean {mean:.2}, RMS {:.2} (PSNR {:.1} dB), 99th percentile {}, max {max}",
        images,
        mse.sqrt(),
        10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10(),
        quantile(0.99)
    );
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let raw_dir = DatasetDir::new(&args.raw).split(args.split);
    let jpeg_dir = DatasetDir::new(&args.jpeg).split(args.split);
    let raw = Dataset::open(&raw_dir)?;
    let jpeg = Dataset::open(&jpeg_dir)?;
    ensure!(
        !raw.is_encoded(),
        "{} does not hold raw shards",
        raw_dir.display()
    );
    ensure!(
        jpeg.is_encoded(),
        "{} does not hold JPEG shards",
        jpeg_dir.display()
    );
    ensure!(
        raw.labels() == jpeg.labels() && raw.image_size() == jpeg.image_size(),
        "the two outputs do not hold the same images (labels or sizes differ)"
    );
    let n = raw.len();
    let step = if args.images == 0 {
        1
    } else {
        n.div_ceil(args.images).max(1)
    };
    let indices: Vec<u64> = (0..n as u64).step_by(step).collect();

    // Size on disk (whole shard files: pixels or streams plus labels, names, index).
    let (raw_bytes, jpeg_bytes) = (shard_bytes(&raw_dir)?, shard_bytes(&jpeg_dir)?);
    let (raw_per, jpeg_per) = (raw_bytes as f64 / n as f64, jpeg_bytes as f64 / n as f64);
    println!("{n} images in {}", args.split);
    let streams = jpeg.stored_image_bytes() as f64 / n as f64;
    println!(
        "image payload: raw {} bytes, jpeg streams {streams:.0} bytes per image ({:.2}x smaller)",
        raw.image_bytes(),
        raw.image_bytes() as f64 / streams
    );
    println!(
        "raw:  {raw_per:.0} bytes per image on disk -> ImageNet train {:.1} GB",
        raw_per * IMAGENET_TRAIN_IMAGES / 1e9
    );
    println!(
        "jpeg: {jpeg_per:.0} bytes per image on disk -> ImageNet train {:.1} GB ({:.2}x smaller)",
        jpeg_per * IMAGENET_TRAIN_IMAGES / 1e9,
        raw_per / jpeg_per
    );

    // Pixel difference, and the read rates of each on one thread.
    let bytes = raw.image_bytes();
    let (mut a, mut b) = (vec![0u8; bytes], vec![0u8; bytes]);
    let mut histogram = [0u64; 256];
    let (mut raw_secs, mut jpeg_secs) = (0.0, 0.0);
    for &i in &indices {
        let t = Instant::now();
        raw.read_image(i, &mut a)?;
        raw_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        jpeg.read_image(i, &mut b)?;
        jpeg_secs += t.elapsed().as_secs_f64();
        for (&x, &y) in a.iter().zip(&b) {
            histogram[x.abs_diff(y) as usize] += 1;
        }
    }
    print_pixel_difference(&histogram, indices.len());
    println!(
        "whole-image reads on one thread: raw {:.0} images/s, jpeg (read + decode) {:.0} images/s",
        indices.len() as f64 / raw_secs,
        indices.len() as f64 / jpeg_secs
    );
    println!("{:.2}x smaller", raw_per / jpeg_per);
    Ok(())
}
