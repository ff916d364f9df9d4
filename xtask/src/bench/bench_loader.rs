//! `cargo xtask bench loader`: images/s of the augmentation loader over
//! shards (given, or generated in a temporary directory).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args as ClapArgs, ValueEnum};
use loader::{
    Dataset, DatasetDir, Encoding, JpegDecodeOptions, Loader, LoaderConfig, Mode, Output, Split,
    Stats, DEFAULT_BATCH_SIZE, DEFAULT_PREFETCH,
};

/// Default of `--threads`.
const DEFAULT_THREADS: usize = 2;
/// Default of `--batches`.
const DEFAULT_BATCHES: usize = 64;
/// Default of `--warmup`: enough batches for the loader to make all the
/// batch buffers it keeps (`threads + prefetch + 2`; 77 MB each for f32 at
/// batch 128, whose first touch costs the kernel's page zeroing), so that
/// the timed batches measure the steady state.
const DEFAULT_WARMUP: usize = 12;
/// Default of `--images`.
const DEFAULT_IMAGES: usize = 2048;

#[derive(ClapArgs)]
pub struct Args {
    /// A preprocess output directory (with `<split>/` and `stats.h5`). When
    /// omitted, ImageNet-sized shards with generated content are written to a
    /// temporary directory (or to --keep-data) first.
    #[arg(long, conflicts_with = "photos")]
    data: Option<PathBuf>,
    /// A directory of real photos named `<wnid>_*.JPEG` (e.g. a clone of
    /// github.com/EliSchwartz/imagenet-sample-images): packed into a train
    /// tar as `bench preprocess --photos` does and preprocessed into shards
    /// with --encoding under --work, once (both are reused).
    #[arg(long)]
    photos: Option<PathBuf>,
    /// With --photos: how many times each photo is packed (under new names).
    #[arg(long, default_value_t = DEFAULT_REPEATS)]
    repeats: usize,
    /// With --photos: how the shards store the images.
    #[arg(long, value_enum, default_value_t = BenchEncoding::Jpeg)]
    encoding: BenchEncoding,
    /// With --photos: where the packed tar and the shards are kept.
    #[arg(long, default_value = DEFAULT_WORK)]
    work: PathBuf,
    /// JPEG shards: libjpeg's fast integer IDCT (not faithful: see
    /// `benchmarks/loader.md`).
    #[arg(long)]
    fast_dct: bool,
    /// JPEG shards: chroma upsampled by replication (not faithful).
    #[arg(long)]
    fast_upsampling: bool,
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
    /// Batches run before timing starts (they fill the loader's buffer pool).
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

/// Default of `--repeats`.
const DEFAULT_REPEATS: usize = 3;
/// Default of `--work`.
const DEFAULT_WORK: &str = "target/bench-loader";

#[derive(Clone, Copy, ValueEnum)]
enum BenchEncoding {
    Raw,
    Jpeg,
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
        (None, _) if args.photos.is_some() => (photo_shards(&args)?, false),
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

/// The shards of `--photos` with `--encoding`, made once under `--work`.
fn photo_shards(args: &Args) -> anyhow::Result<PathBuf> {
    let photos = args.photos.as_deref().expect("called with --photos");
    let packed = super::real_photos::pack(photos, &args.work, args.repeats)?;
    let encoding = match args.encoding {
        BenchEncoding::Raw => Encoding::Raw,
        BenchEncoding::Jpeg => Encoding::jpeg(),
    };
    let out = packed.dir.join(format!("shards-{}", encoding.name()));
    if !DatasetDir::new(&out).stats().is_file() {
        eprintln!(
            "preprocessing {} photos of {} classes into {} shards in {} ...",
            packed.members,
            packed.classes,
            encoding.name(),
            out.display()
        );
        let _ = std::fs::remove_dir_all(&out);
        let mut cfg = preprocess::PreprocessConfig::new(&out);
        cfg.train_tar = Some(packed.dir.join(synth::TRAIN_TAR));
        cfg.encoding = encoding;
        preprocess::run(&cfg, &preprocess::NoProgress).context("preprocessing the photos")?;
    }
    Ok(out)
}

/// The loader configuration the arguments ask for.
fn loader_config(args: &Args) -> LoaderConfig {
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
    LoaderConfig {
        batch_size: args.batch_size,
        threads: args.threads,
        prefetch: args.prefetch,
        mode,
        output,
        jpeg: JpegDecodeOptions {
            fast_dct: args.fast_dct,
            fast_upsampling: args.fast_upsampling,
        },
        ..base
    }
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
    let cfg = loader_config(args);
    let (mode, output) = (cfg.mode, cfg.output);
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
    if loader.dataset().is_encoded() {
        report_jpeg(&loader, crop, rate / args.threads as f64)?;
    }
    println!("{rate:.0} images/s");
    Ok(())
}

/// For JPEG shards: the decode-only ceiling next to the loader's rate per
/// thread, and the pixel difference of non-default decode options.
fn report_jpeg(loader: &Loader, crop: usize, per_thread: f64) -> anyhow::Result<()> {
    let ceiling = decode_ceiling(loader.dataset(), crop, loader.config().jpeg)?;
    eprintln!(
        "decode-only ceiling, one thread, the same stored JPEGs in memory: whole {}x{} \
             {:.0} images/s, the crop's region only {:.0} images/s (by lossless crop transform \
             and decode: {:.0}); the loader reaches {:.0}% of the whole-image ceiling and {:.0}% \
             of the region ceiling per thread",
        loader.dataset().image_size().1,
        loader.dataset().image_size().0,
        ceiling.whole,
        ceiling.region,
        ceiling.transform,
        100.0 * per_thread / ceiling.whole,
        100.0 * per_thread / ceiling.region
    );
    let options = loader.config().jpeg;
    if options != JpegDecodeOptions::default() {
        let (mean, max, share) = option_difference(loader.dataset(), crop, options)?;
        eprintln!(
            "{options:?} against faithful decoding (256 images, one crop each): mean absolute \
             difference {mean:.3}, largest {max}, {:.1}% of the values differ",
            100.0 * share
        );
    }
    Ok(())
}

/// Images/s of decoding alone on one thread.
struct Ceiling {
    whole: f64,
    region: f64,
    transform: f64,
}

/// A random `crop` x `crop` region of an `h` x `w` image per call
/// (xorshift), as (rows, columns).
struct Regions {
    state: u64,
    h: usize,
    w: usize,
    crop: usize,
}

impl Regions {
    fn next(&mut self) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let s = &mut self.state;
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        let y = (*s % (self.h - self.crop + 1) as u64) as usize;
        let x = ((*s >> 32) % (self.w - self.crop + 1) as u64) as usize;
        (y..y + self.crop, x..x + self.crop)
    }
}

/// Calls `f` on streams `0, 1, ..` (wrapping at `n`) for about a second;
/// images/s.
fn time_loop(n: usize, f: &mut dyn FnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut done = 0usize;
    while t.elapsed().as_secs_f64() < 1.0 {
        f(done % n)?;
        done += 1;
    }
    Ok(done as f64 / t.elapsed().as_secs_f64())
}

/// Decodes the dataset's first stored JPEGs (up to 1,024, read into memory
/// first) over and over for about a second each way: whole images with
/// TurboJPEG (what the loader did before region decoding), a random `crop`
/// region of each with the loader's decoder and options, and the same
/// region by libjpeg-turbo's lossless crop transform (the stream cut to the
/// region's MCUs, plus one MCU of margin where the image has one, as for
/// the region decoder) followed by a TurboJPEG decode of the cut stream.
fn decode_ceiling(
    dataset: &Dataset,
    crop: usize,
    options: JpegDecodeOptions,
) -> anyhow::Result<Ceiling> {
    let n = dataset.len().min(1024);
    let mut streams = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let mut s = Vec::new();
        dataset.read_jpeg_stream(i, &mut s)?;
        streams.push(s);
    }
    let (h, w) = dataset.image_size();
    let mut out = vec![0u8; h * w * 3];
    let whole = time_loop(n, &mut |i| {
        Ok(shards::decode_jpeg_into(&streams[i], w, h, &mut out)?)
    })?;
    let seed = 0x9e37_79b9_7f4a_7c15;
    let mut regions = Regions {
        state: seed,
        h,
        w,
        crop,
    };
    let region = time_loop(n, &mut |i| {
        let (rows, cols) = regions.next();
        shards::decode_jpeg_region_into(&streams[i], (w, h), rows, cols, options, &mut out)?;
        Ok(())
    })?;
    let mut regions = Regions {
        state: seed,
        h,
        w,
        crop,
    };
    let mut transformer = turbojpeg::Transformer::new()?;
    let mut decompressor = turbojpeg::Decompressor::new()?;
    let transform = time_loop(n, &mut |i| {
        let (rows, cols) = regions.next();
        let mcu = 16;
        let x0 = cols.start.saturating_sub(1) / mcu * mcu;
        let y0 = rows.start.saturating_sub(1) / mcu * mcu;
        let x1 = (cols.end + 1).min(w);
        let y1 = (rows.end + 1).min(h);
        let t = turbojpeg::Transform {
            crop: Some(turbojpeg::TransformCrop {
                x: x0,
                y: y0,
                width: Some(x1 - x0),
                height: Some(y1 - y0),
            }),
            ..Default::default()
        };
        let cut = transformer.transform_to_owned(&t, &streams[i])?;
        let image = turbojpeg::Image {
            pixels: &mut out[..],
            width: x1 - x0,
            pitch: (x1 - x0) * 3,
            height: y1 - y0,
            format: turbojpeg::PixelFormat::RGB,
        };
        decompressor.decompress(&cut, image)?;
        Ok(())
    })?;
    Ok(Ceiling {
        whole,
        region,
        transform,
    })
}

/// Mean and largest absolute difference, per value, between region decodes
/// with `options` and faithful ones, over the dataset's first 256 images
/// (one random crop region each), and the fraction of values that differ.
fn option_difference(
    dataset: &Dataset,
    crop: usize,
    options: JpegDecodeOptions,
) -> anyhow::Result<(f64, u8, f64)> {
    let (h, w) = dataset.image_size();
    let mut regions = Regions {
        state: 0x2545_f491_4f6c_dd1d,
        h,
        w,
        crop,
    };
    let (mut fast, mut exact, mut stream) =
        (vec![0u8; h * w * 3], vec![0u8; h * w * 3], Vec::new());
    let (mut sum, mut max, mut differ, mut count) = (0u64, 0u8, 0u64, 0u64);
    for i in 0..dataset.len().min(256) as u64 {
        dataset.read_jpeg_stream(i, &mut stream)?;
        let (rows, cols) = regions.next();
        let a = shards::decode_jpeg_region_into(
            &stream,
            (w, h),
            rows.clone(),
            cols.clone(),
            options,
            &mut fast,
        )?;
        let b = shards::decode_jpeg_region_into(
            &stream,
            (w, h),
            rows,
            cols.clone(),
            JpegDecodeOptions::default(),
            &mut exact,
        )?;
        for r in 0..crop {
            let pa = &fast[(r * a.cols + cols.start - a.first_col) * 3..][..crop * 3];
            let pb = &exact[(r * b.cols + cols.start - b.first_col) * 3..][..crop * 3];
            for (&p, &q) in pa.iter().zip(pb) {
                let d = p.abs_diff(q);
                sum += d as u64;
                max = max.max(d);
                differ += (d > 0) as u64;
                count += 1;
            }
        }
    }
    Ok((sum as f64 / count as f64, max, differ as f64 / count as f64))
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
