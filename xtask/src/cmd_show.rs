//! `cargo xtask show filters | predictions | neighbours | curves`: the
//! paper's figures as PNG files (thin layer over `trainer::figures`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use loader::Split;
use trainer::figures::{self, curves, filters, neighbours, predictions, FigureSource};
use trainer::{Checkpoint, MetricsFiles};

/// Draw the paper's figures from a checkpoint or from runs' metrics.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(subcommand)]
    pub figure: Figure,
}

#[derive(Subcommand, Debug)]
pub enum Figure {
    /// Figure 3: conv1 kernels, tower A on top, tower B below, each
    /// contrast-stretched on its own; prints each tower's colourfulness.
    Filters(FiltersArgs),
    /// Figure 4 (left): validation images with their top-5 classes as
    /// bars (the true class's bar in red).
    Predictions(PredictionsArgs),
    /// Figure 4 (right): validation images with the training images nearest
    /// in last-hidden-layer (fc7) activations.
    Neighbours(NeighboursArgs),
    /// Figure 1: the training-error curves of several runs against epochs.
    Curves(CurvesArgs),
}

/// Options shared by the figures drawn from a checkpoint.
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// A run directory (its newest checkpoint) or a checkpoint directory.
    #[arg(long, value_name = "RUN_OR_CKPT")]
    pub checkpoint: PathBuf,
    /// The PNG file to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
}

/// Options of the figures that read the dataset.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// The preprocess output (when not given, the directory the run trained on).
    #[arg(long, value_name = "OUT")]
    pub data: Option<PathBuf>,
    /// Validation images to show.
    #[arg(long, default_value_t = figures::DEFAULT_COUNT)]
    pub count: usize,
    /// Draw the images at random with this seed (when not given, spread
    /// evenly over the validation split).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Side of each image in the figure, pixels (when not given, 128 for
    /// predictions, 96 for neighbours).
    #[arg(long)]
    pub thumb: Option<usize>,
    /// Tower placement: `cpu`, `cuda:0`, or `cuda:0,cuda:1`.
    #[arg(long, default_value_t = trainer::Devices::default())]
    pub devices: trainer::Devices,
}

#[derive(Args, Debug)]
pub struct FiltersArgs {
    #[command(flatten)]
    pub common: CheckpointArgs,
    /// Screen pixels per kernel weight.
    #[arg(long, default_value_t = filters::FiltersOptions::default().scale)]
    pub scale: usize,
    /// Kernels per row.
    #[arg(long, default_value_t = filters::FiltersOptions::default().columns)]
    pub columns: usize,
}

#[derive(Args, Debug)]
pub struct PredictionsArgs {
    #[command(flatten)]
    pub common: CheckpointArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Images per row.
    #[arg(long, default_value_t = predictions::PredictionsOptions::default().columns)]
    pub columns: usize,
}

#[derive(Args, Debug)]
pub struct NeighboursArgs {
    #[command(flatten)]
    pub common: CheckpointArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Training images per validation image (the paper: 6).
    #[arg(long, default_value_t = neighbours::NeighboursOptions::default().k)]
    pub neighbours: usize,
    /// Images per batch of the training-feature pass.
    #[arg(long, default_value_t = neighbours::NeighboursOptions::default().batch_size)]
    pub batch_size: usize,
    /// Loader threads (when not given, the cores this process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct CurvesArgs {
    /// Run directories (their metrics.jsonl), e.g. a ReLU run and a tanh run.
    #[arg(long, required = true, num_args = 1.., value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// Draw a dashed line at this training error (percent) and print the
    /// first epoch each run reaches it (the paper compares at 25%).
    #[arg(long, default_value_t = curves::PAPER_THRESHOLD)]
    pub threshold: f64,
    /// The PNG file to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
}

pub fn run(args: ShowArgs) -> anyhow::Result<()> {
    match args.figure {
        Figure::Filters(a) => run_filters(a),
        Figure::Predictions(a) => run_predictions(a),
        Figure::Neighbours(a) => run_neighbours(a),
        Figure::Curves(a) => run_curves(a),
    }
}

fn run_filters(a: FiltersArgs) -> anyhow::Result<()> {
    let ck = Checkpoint::open(&a.common.checkpoint)?;
    let fig = filters::draw_filters(
        &ck,
        &a.common.out,
        &filters::FiltersOptions {
            scale: a.scale,
            columns: a.columns,
        },
    )?;
    println!("{}", fig.summary());
    println!(
        "wrote {} ({}x{})",
        a.common.out.display(),
        fig.layout.width(),
        fig.layout.height()
    );
    Ok(())
}

fn open_source(common: &CheckpointArgs, data: &DataArgs) -> anyhow::Result<FigureSource> {
    FigureSource::open(&common.checkpoint, data.data.as_deref(), &data.devices)
        .with_context(|| format!("opening {}", common.checkpoint.display()))
}

fn run_predictions(a: PredictionsArgs) -> anyhow::Result<()> {
    let src = open_source(&a.common, &a.data)?;
    let val_len = src.split(Split::Val)?.len();
    let picked = figures::pick_images(val_len, a.data.count, a.data.seed);
    let defaults = predictions::PredictionsOptions::default();
    let fig = predictions::draw_predictions(
        &src,
        &picked,
        &a.common.out,
        &predictions::PredictionsOptions {
            thumb: a.data.thumb.unwrap_or(defaults.thumb),
            columns: a.columns,
        },
    )?;
    let mut top1 = 0;
    for item in &fig.items {
        let best = &item.top[0];
        top1 += usize::from(best.class == item.label);
        println!(
            "val {}: true {} | top-1 {} ({:.1}%)",
            item.index,
            src.words(item.label),
            src.words(best.class),
            100.0 * best.probability
        );
    }
    println!(
        "wrote {} ({} images, {top1} right at top-1)",
        a.common.out.display(),
        fig.items.len()
    );
    Ok(())
}

fn run_neighbours(a: NeighboursArgs) -> anyhow::Result<()> {
    let src = open_source(&a.common, &a.data)?;
    let val_len = src.split(Split::Val)?.len();
    let picked = figures::pick_images(val_len, a.data.count, a.data.seed);
    let defaults = neighbours::NeighboursOptions::default();
    let bars = crate::train_progress::EvalBars::new(!a.quiet);
    let fig = neighbours::draw_neighbours(
        &src,
        &picked,
        &a.common.out,
        &neighbours::NeighboursOptions {
            k: a.neighbours,
            thumb: a.data.thumb.unwrap_or(defaults.thumb),
            batch_size: a.batch_size,
            threads: a.threads.unwrap_or_else(trainer::default_threads),
        },
        &bars,
    )?;
    drop(bars);
    let mut same = 0;
    let mut shown = 0;
    for row in &fig.rows {
        let n_same = row
            .neighbours
            .iter()
            .filter(|n| n.label == row.label)
            .count();
        same += n_same;
        shown += row.neighbours.len();
        println!(
            "val {} ({}): {} of {} nearest share its class, distances {}",
            row.query,
            src.words(row.label),
            n_same,
            row.neighbours.len(),
            row.neighbours
                .iter()
                .map(|n| format!("{:.3}", n.distance))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "wrote {} ({} queries against {} training images; {same} of {shown} neighbours share the query's class)",
        a.common.out.display(),
        fig.rows.len(),
        fig.train_images
    );
    Ok(())
}

fn run_curves(a: CurvesArgs) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for dir in &a.runs {
        let history = MetricsFiles::new(dir)
            .read()
            .with_context(|| format!("reading the metrics of {}", dir.display()))?;
        let name = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
        let label = match Checkpoint::open(dir) {
            Ok(ck) => format!("{name} ({})", ck.state.architecture.activation),
            Err(_) => name,
        };
        runs.push(curves::RunCurve { label, history });
    }
    curves::draw_error_curves(&a.out, &runs, Some(a.threshold))?;
    for r in &runs {
        let last = r.history.last();
        println!(
            "{}: {} epochs, final training top-1 error {}, first epoch at or below {}%: {}",
            r.label,
            r.history.len(),
            last.map_or("-".into(), |m| format!("{:.2}%", m.train_top1_error)),
            a.threshold,
            r.first_epoch_at_or_below(a.threshold)
                .map_or("not reached".into(), |e| e.to_string())
        );
    }
    println!("wrote {}", a.out.display());
    Ok(())
}
