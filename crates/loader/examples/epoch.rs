//! Iterates training batches over a preprocess output directory and reports
//! the rate.
//!
//! ```text
//! cargo run --release -p loader --example epoch -- OUT [THREADS] [BATCHES]
//! cargo run --release -p loader --example epoch -- --generate DIR IMAGES
//! ```

use std::path::Path;
use std::time::Instant;

use loader::{Dataset, DatasetDir, Loader, LoaderConfig, Stats};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--generate") {
        let (dir, images) = (Path::new(&args[1]), args[2].parse()?);
        shards::testing::write_dataset(dir, &shards::testing::ShardSpec::imagenet_sized(images))?;
        return Ok(());
    }
    let out = Path::new(args.first().ok_or("usage: epoch OUT [THREADS] [BATCHES]")?);
    let threads = args.get(1).map_or(Ok(2), |s| s.parse())?;
    let batches: usize = args.get(2).map_or(Ok(32), |s| s.parse())?;

    let data = DatasetDir::new(out);
    let train = Dataset::open(&data.train())?;
    let stats = Stats::open(&data.stats())?;
    let loader = Loader::new(
        train,
        stats,
        LoaderConfig {
            threads,
            ..LoaderConfig::train()
        },
    )?;
    println!("{:?}", loader);

    let (mut seen, mut images, mut epoch) = (0, 0, 0);
    let t = Instant::now();
    while seen < batches {
        for batch in loader.epoch(epoch)? {
            let batch = batch?;
            images += batch.len();
            seen += 1;
            if seen == batches {
                break;
            }
        }
        epoch += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{images} images in {secs:.2} s: {:.0} images/s",
        images as f64 / secs
    );
    Ok(())
}
