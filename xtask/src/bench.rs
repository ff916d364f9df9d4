//! `cargo xtask bench ...`: release-mode benchmarks. Each prints its rate as
//! its last line.

use clap::{Args, Subcommand};

mod bench_device_check;
mod bench_encoding;
mod bench_input_check;
mod bench_loader;
mod bench_open;
mod bench_ops_check;
mod bench_preprocess;
mod bench_ranks;
mod bench_train_step;
mod decode_ceiling;
mod real_photos;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Preprocess throughput (images/s) on a generated or given dataset.
    Preprocess(bench_preprocess::Args),
    /// Loader throughput (images/s) over preprocessed shards.
    Loader(bench_loader::Args),
    /// JPEG against raw shards of the same inputs: bytes per image, pixel difference, read rates.
    Encoding(bench_encoding::Args),
    /// Time to open a split of many shards (ImageNet's 1,252 by default).
    Open(bench_open::Args),
    /// Training-step throughput (images/s): forward, loss, backward, SGD update.
    TrainStep(bench_train_step::Args),
    /// Same network on the CPU and on a placement: logits, loss, gradients, SGD step agree.
    DeviceCheck(bench_device_check::Args),
    /// Each custom operation (output and gradients) and the SGD step on a device against the CPU.
    OpsCheck(bench_ops_check::Args),
    /// Data-parallel training: N ranks under mpirun against one process (needs the `mpi` feature).
    Ranks(bench_ranks::Args),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Bench::Preprocess(a) => bench_preprocess::run(a),
        Bench::Loader(a) => bench_loader::run(a),
        Bench::Encoding(a) => bench_encoding::run(a),
        Bench::Open(a) => bench_open::run(a),
        Bench::TrainStep(a) => bench_train_step::run(a),
        Bench::DeviceCheck(a) => bench_device_check::run(a),
        Bench::OpsCheck(a) => bench_ops_check::run(a),
        Bench::Ranks(a) => bench_ranks::run(a),
    }
}
