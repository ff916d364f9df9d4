//! `cargo xtask synth`: write a synthetic dataset in the ImageNet layout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use synth::{SynthConfig, SynthInfo};

/// Generate a synthetic dataset in the exact ImageNet three-file layout
/// (train tar of per-class tars, flat val tar, devkit tar.gz with meta.mat),
/// or the extracted tree layout with `--trees`, or Kaggle's or Hugging
/// Face's layout with `--layout`. Defaults: the quick-start
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
    /// devkit) instead of the tars (the same as --layout tree).
    #[arg(long, conflicts_with = "layout")]
    pub trees: bool,
    /// The layout to write the photos in: the official files, the extracted
    /// tree, Kaggle's ImageNet Object Localization Challenge (directory or
    /// zip), or Hugging Face imagenet-1k (tar.gz or parquet). Every layout
    /// holds the same photos; `preprocess --from OUT` reads any of them.
    #[arg(long, value_enum, default_value_t = LayoutArg::Official)]
    pub layout: LayoutArg,
    /// Hugging Face layouts: train images per file.
    #[arg(long, default_value_t = synth::HF_TRAIN_PER_FILE)]
    pub train_per_file: usize,
    /// Hugging Face parquet: rows per row group.
    #[arg(long, default_value_t = synth::PARQUET_ROWS_PER_GROUP)]
    pub rows_per_group: usize,
}

/// `--layout` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    /// ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and the devkit.
    Official,
    /// train/<wnid>/*.JPEG, val/*.JPEG and the devkit.
    Tree,
    /// Kaggle's directory: ILSVRC/Data/CLS-LOC/, LOC_val_solution.csv,
    /// LOC_synset_mapping.txt.
    Kaggle,
    /// Kaggle's zip, as downloaded.
    KaggleZip,
    /// Hugging Face: data/train_images_<k>.tar.gz, data/val_images.tar.gz,
    /// classes.py.
    HfTar,
    /// Hugging Face: data/train-*.parquet, data/validation-*.parquet,
    /// classes.py.
    HfParquet,
}

impl From<LayoutArg> for synth::Layout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Official => synth::Layout::Official,
            LayoutArg::Tree => synth::Layout::Tree,
            LayoutArg::Kaggle => synth::Layout::Kaggle,
            LayoutArg::KaggleZip => synth::Layout::KaggleZip,
            LayoutArg::HfTar => synth::Layout::HfTar,
            LayoutArg::HfParquet => synth::Layout::HfParquet,
        }
    }
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
    let layout = if args.trees {
        LayoutArg::Tree
    } else {
        args.layout
    };
    if !matches!(layout, LayoutArg::Official | LayoutArg::Tree) {
        let opts = synth::LayoutOptions {
            train_per_file: args.train_per_file,
            rows_per_group: args.rows_per_group,
        };
        let l = synth::generate_layout_with(&args.out, &cfg, layout.into(), opts).with_context(
            || {
                format!(
                    "generating the synthetic {layout:?} layout in {}",
                    args.out.display()
                )
            },
        )?;
        for p in &l.files {
            println!("wrote {}", p.display());
        }
        print_info(&l.info);
        let from: Vec<String> = l
            .from
            .iter()
            .map(|p| format!("--from {}", p.display()))
            .collect();
        println!(
            "read it with: cargo xtask preprocess {} --out DIR",
            from.join(" ")
        );
    } else if layout == LayoutArg::Tree {
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
