//! `cargo xtask bench loader`: images/s of the augmentation loader over
//! shards (given, or generated in a temporary directory).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args as ClapArgs, ValueEnum};
use loader::{
    Dataset, DatasetDir, Loader, LoaderConfig, Mode, Output, Split, Stats, DEFAULT_BATCH_SIZE,
    DEFAULT_PREFETCH,
};

/// Default of `--threads`.
const DEFAULT_THREADS: usize = 2;
/// Default of `--batches`.
const DEFAULT_BATCHES: usize = 64;
/// Default of `--warmup`.
const DEFAULT_WARMUP: usize = 4;
/// Default of `--images`.
const DEFAULT_IMAGES: usize = 2048;

#[derive(ClapArgs)]
pub struct Args {
    /// A preprocess output directory (with `<split>/` and `stats.h5`). When
    /// omitted, ImageNet-sized shards with generated content are written to a
    /// temporary directory (or to --keep-data) first.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Split to read.
    #[arg(long, default_value_t = Split::Train)]
    split: Split,
    /// Worker threads.
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    threads: usize,
    /// Images per batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Batches to time (epochs are repeated as needed).
    #[arg(long, default_value_t = DEFAULT_BATCHES)]
    batches: usize,
    /// Batches run before timing starts.
    #[arg(long, default_value_t = DEFAULT_WARMUP)]
    warmup: usize,
    /// Batches prefetched beyond one per worker.
    #[arg(long, default_value_t = DEFAULT_PREFETCH)]
    prefetch: usize,
    /// Crops to produce.
    #[arg(long, value_enum, default_value_t = BenchMode::Train)]
    mode: BenchMode,
    /// Output element type and layout.
    #[arg(long, value_enum, default_value_t = BenchOutput::F32)]
    output: BenchOutput,
    /// Images to generate when --data is not given.
    #[arg(long, default_value_t = DEFAULT_IMAGES)]
    images: usize,
    /// Keep the generated dataset in this directory (e.g. to run the PyTorch
    /// peer `scripts/peers/loader_torch.py` on the same shards).
    #[arg(long)]
    keep_data: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchMode {
    Train,
    Center,
    Ten,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchOutput {
    F32,
    U8Nhwc,
    U8Nchw,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (out, temporary) = match (&args.data, &args.keep_data) {
        (Some(d), _) => (d.clone(), false),
        (None, keep) => {
            let dir = keep.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("loader-bench-{}", std::process::id()))
            });
            let spec = shards::testing::ShardSpec::imagenet_sized(args.images);
            let t = Instant::now();
            shards::testing::write_dataset(&dir, &spec)
                .with_context(|| format!("writing generated shards to {}", dir.display()))?;
            eprintln!(
                "wrote {} generated 256x256 images in {} shards to {} ({:.1} s)",
                spec.total(),
                spec.images_per_shard.len(),
                dir.display(),
                t.elapsed().as_secs_f64()
            );
            (dir, keep.is_none())
        }
    };
    let result = bench(&args, &out);
    if temporary {
        std::fs::remove_dir_all(&out).ok();
    }
    result
}

fn bench(args: &Args, out: &Path) -> anyhow::Result<()> {
    let opened = std::time::Instant::now();
    let data = DatasetDir::new(out);
    let dataset = Dataset::open(&data.split(args.split))?;
    println!(
        "opened {} images in {} shards in {:.1} ms",
        dataset.len(),
        dataset.num_shards(),
        opened.elapsed().as_secs_f64() * 1e3
    );
    if let Some(warning) = dataset.slow_read_warning() {
        eprintln!("warning: {warning}");
    }
    let stats = Stats::open(&data.stats())?;
    let mode = match args.mode {
        BenchMode::Train => Mode::Train,
        BenchMode::Center => Mode::CenterCrop,
        BenchMode::Ten => Mode::TenCrop,
    };
    let output = match args.output {
        BenchOutput::F32 => Output::F32Nchw,
        BenchOutput::U8Nhwc => Output::U8Nhwc,
        BenchOutput::U8Nchw => Output::U8Nchw,
    };
    let base = if mode == Mode::Train {
        LoaderConfig::train()
    } else {
        LoaderConfig::eval()
    };
    let cfg = LoaderConfig {
        batch_size: args.batch_size,
        threads: args.threads,
        prefetch: args.prefetch,
        mode,
        output,
        ..base
    };
    let crop = cfg.crop;
    let loader = Loader::new(dataset, stats, cfg)?;
    eprintln!(
        "{} images in {} shards, {:?}, {:?}, batch {}, {} thread(s), {} batches per epoch",
        loader.dataset().len(),
        loader.dataset().num_shards(),
        mode,
        output,
        args.batch_size,
        args.threads,
        loader.batches_per_epoch()
    );

    // Warm-up (page cache, pool), then the timed batches.
    let mut epoch = 0u64;
    let run_batches = |count: usize, epoch: &mut u64| -> anyhow::Result<usize> {
        let (mut done, mut images) = (0, 0);
        while done < count {
            for batch in loader.epoch(*epoch)? {
                let batch = batch?;
                images += batch.len() * batch.views();
                done += 1;
                if done == count {
                    break;
                }
            }
            *epoch += 1;
        }
        Ok(images)
    };
    run_batches(args.warmup.max(1), &mut epoch)?;
    let t = Instant::now();
    let images = run_batches(args.batches, &mut epoch)?;
    let secs = t.elapsed().as_secs_f64();
    let rate = images as f64 / secs;

    // The bytes each output view must move at least: its u8 crop in, the
    // f32 mean at the same pixels in (mean-image subtraction), f32 out.
    let px = (3 * crop * crop) as f64;
    let bytes = match output {
        Output::F32Nchw => px + 4.0 * px + 4.0 * px,
        Output::U8Nhwc | Output::U8Nchw => 2.0 * px,
    };
    let copy_gbs = copy_bandwidth_gbs();
    let floor = copy_gbs * 1e9 / bytes;
    eprintln!(
        "{images} views in {secs:.2} s; {:.0} views/s per thread; {:.2} MB moved per view -> {:.2} GB/s",
        rate / args.threads as f64,
        bytes / 1e6,
        rate * bytes / 1e9
    );
    eprintln!(
        "one-thread memcpy here: {copy_gbs:.1} GB/s (read + write) -> bandwidth floor {floor:.0} views/s per thread; \
         the loader reaches {:.0}% of it per thread",
        100.0 * rate / args.threads as f64 / floor
    );
    println!("{rate:.0} images/s");
    Ok(())
}

/// Single-thread copy bandwidth (bytes read + bytes written per second) over
/// buffers far larger than the caches.
fn copy_bandwidth_gbs() -> f64 {
    let n = 64 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    dst.copy_from_slice(&src);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * n as f64 / best / 1e9
}
