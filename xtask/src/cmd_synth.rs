//! `cargo xtask synth`: write a synthetic dataset in the ImageNet layout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use synth::{SynthConfig, SynthInfo};

/// Generate a synthetic dataset in the exact ImageNet three-file layout
/// (train tar of per-class tars, flat val tar, devkit tar.gz with meta.mat),
/// or the extracted tree layout with `--trees`. Defaults: the quick-start
/// preset (10 classes x 260 train images, 500 val images, 300-500 px, odd
/// files planted).
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Directory to write into (created if missing; files of the same names
    /// are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of classes (leaf synsets).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Train images per class.
    #[arg(long)]
    pub train_per_class: Option<usize>,
    /// Validation images in total (labels balanced over the classes).
    #[arg(long)]
    pub val_images: Option<usize>,
    /// Smallest image side in pixels.
    #[arg(long)]
    pub min_side: Option<u32>,
    /// Largest image side in pixels.
    #[arg(long)]
    pub max_side: Option<u32>,
    /// Random seed: the same seed and options write identical files.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Plant odd files (grayscale, CMYK, YCCK, progressive, PNG named .JPEG)
    /// and broken ones (truncated, empty, text, random bytes) in both splits
    /// (the default, as in the quick-start preset).
    #[arg(long, conflicts_with = "no_odd_files")]
    pub odd_files: bool,
    /// Do not plant odd or broken files.
    #[arg(long)]
    pub no_odd_files: bool,
    /// Write the extracted layout (train/<wnid>/*.JPEG, val/*.JPEG and the
    /// devkit) instead of the tars.
    #[arg(long)]
    pub trees: bool,
}

impl SynthArgs {
    fn config(&self) -> SynthConfig {
        let mut cfg = SynthConfig::quickstart();
        if let Some(v) = self.classes {
            cfg.classes = v;
        }
        if let Some(v) = self.train_per_class {
            cfg.train_per_class = v;
        }
        if let Some(v) = self.val_images {
            cfg.val_images = v;
        }
        if let Some(v) = self.min_side {
            cfg.min_side = v;
        }
        if let Some(v) = self.max_side {
            cfg.max_side = v;
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if self.odd_files {
            cfg.plant_odd_files = true;
        }
        if self.no_odd_files {
            cfg.plant_odd_files = false;
        }
        cfg
    }
}

fn print_info(info: &SynthInfo) {
    println!(
        "classes: {} (ILSVRC2012_IDs not in sorted-WNID order)",
        info.wnids_sorted.len()
    );
    println!(
        "train: {} files ({} decodable), val: {} files ({} decodable)",
        info.train_count,
        info.decodable_train_count(),
        info.val_count,
        info.decodable_val_count()
    );
    for (name, kind) in &info.odd {
        let what = if kind.is_decodable() {
            "decodable"
        } else {
            "broken"
        };
        println!("  odd file {name}: {kind:?} ({what})");
    }
}

/// Runs `cargo xtask synth`.
pub fn run_synth(args: SynthArgs) -> anyhow::Result<()> {
    let cfg = args.config();
    let start = Instant::now();
    if args.trees {
        let t = synth::generate_trees(&args.out, &cfg)
            .with_context(|| format!("generating the synthetic trees in {}", args.out.display()))?;
        println!("wrote {}", t.train_dir.display());
        println!("wrote {}", t.val_dir.display());
        println!("wrote {}", t.devkit.display());
        print_info(&t.info);
    } else {
        let d = synth::generate(&args.out, &cfg).with_context(|| {
            format!("generating the synthetic dataset in {}", args.out.display())
        })?;
        for p in [&d.train_tar, &d.val_tar, &d.devkit] {
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            println!("wrote {} ({:.1} MB)", p.display(), size as f64 / 1e6);
        }
        print_info(&d.info);
    }
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
