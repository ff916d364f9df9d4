//! `cargo xtask bench open`: how long `Dataset::open` takes for a split of
//! many shards. The shards of a given split are hard-linked under new
//! numbers into a scratch directory until it holds `--shards` of them, so
//! ImageNet's 1,252 training shards can be opened without 252 GB of disk.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::Args as ClapArgs;
use loader::Dataset;
/// Default of `--shards`.
const DEFAULT_SHARDS: usize = 1252;
/// Default of `--repeats`.
const DEFAULT_REPEATS: usize = 5;

#[derive(ClapArgs)]
pub struct Args {
    /// A split directory of shards (e.g. OUT/train).
    #[arg(long)]
    split_dir: PathBuf,
    /// Shards to open (the split's own shards repeated as needed; 1,252 is
    /// ImageNet train at 1,024 images per shard).
    #[arg(long, default_value_t = DEFAULT_SHARDS)]
    shards: usize,
    /// Timed opens (the median is reported).
    #[arg(long, default_value_t = DEFAULT_REPEATS)]
    repeats: usize,
    /// Scratch directory for the links (on the same file system as the
    /// shards; default: next to the split directory).
    #[arg(long)]
    scratch: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let source = shards::list_shards(&args.split_dir)?;
    ensure!(
        !source.is_empty(),
        "no shards in {}",
        args.split_dir.display()
    );
    let scratch = args.scratch.clone().unwrap_or_else(|| {
        let mut name = args.split_dir.as_os_str().to_owned();
        name.push(format!(".open-bench-{}", std::process::id()));
        PathBuf::from(name)
    });
    std::fs::create_dir_all(&scratch).with_context(|| scratch.display().to_string())?;
    let result = (|| -> anyhow::Result<()> {
        for id in 0..args.shards {
            let (_, from) = &source[id % source.len()];
            let to = scratch.join(shards::shard_file_name(id as u64));
            std::fs::hard_link(from, &to)
                .with_context(|| format!("linking {} to {}", from.display(), to.display()))?;
        }
        let mut times = Vec::new();
        let mut images = 0;
        for _ in 0..args.repeats.max(1) {
            let t = Instant::now();
            let ds = Dataset::open(&scratch)?;
            times.push(t.elapsed().as_secs_f64());
            images = ds.len();
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "opened {} shards ({images} images) {} times: median {:.3} s, fastest {:.3} s, slowest {:.3} s ({:.2} ms per shard)",
            args.shards,
            times.len(),
            median,
            times[0],
            times[times.len() - 1],
            median * 1e3 / args.shards as f64
        );
        println!("{median:.3} s to open");
        Ok(())
    })();
    std::fs::remove_dir_all(&scratch).ok();
    result
}
