//! `cargo xtask`: the front door of the workspace.
//!
//! Each subcommand is a thin layer over one of the library crates; the logic
//! lives there. Run `cargo xtask --help` or `cargo xtask <command> --help`.

use clap::{Parser, Subcommand};

mod bench;
mod cmd_preprocess;
mod cmd_show;
mod cmd_synth;
mod cmd_train;
mod train_progress;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (index in its `mi_option_e` enum, the
/// same in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in the allocator instead of returning it to the
/// operating system. A training step frees and re-allocates the same few
/// hundred megabytes of activations and gradients; returned pages come back
/// zeroed by the kernel on every step (kernel page zeroing fell from 14% to 7%
/// of a train-step profile; what remains is setup). The price is that the
/// resident size stays at its peak, as with PyTorch's allocator.
fn keep_freed_memory() {
    // SAFETY: called once at the start of `main`, before any other thread
    // exists (mimalloc's option setter is not thread safe).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    keep_freed_c_memory();
}

/// The same for the C libraries' allocations (HDF5, libjpeg-turbo), which
/// go through glibc's `malloc`, not through mimalloc. HDF5 callocs a 1 MiB
/// type-conversion buffer for every string dataset it writes (three per
/// shard) and frees it; with glibc's defaults the freed block is handed back
/// to the kernel and faulted in, zeroed, again on the next write. Fixed
/// thresholds keep blocks up to 32 MiB in the heap and let it hold up to
/// 64 MiB of free memory before trimming.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_c_memory() {
    // SAFETY: mallopt only adjusts glibc's tuning parameters; called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_c_memory() {}

/// Ordinary 4 KiB pages for the rest of the process instead of transparent
/// huge pages. mimalloc advises the kernel to back its arenas with 2 MiB
/// huge pages, and the first touch of each makes the kernel zero all 2 MiB
/// of it: in a preprocess run of 1,005 real photos that zeroing
/// (`clear_page_erms`) was 9-15% of the CPU, and the process used about a
/// fifth less CPU without it (benchmarks/preprocess.md). Preprocessing
/// touches its memory once, in many places, and gains nothing from fewer
/// TLB misses; training keeps huge pages.
pub(crate) fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process that the
    // kernel reads at page faults; the other arguments must be zero.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// AlexNet on ImageNet: preprocess the three ImageNet files into HDF5 shards,
/// stream them through the augmentation loader, train the 2012 network.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert ImageNet's train tar, val tar and devkit into 256x256 HDF5 shards.
    Preprocess(cmd_preprocess::PreprocessArgs),
    /// Generate a small synthetic dataset in the exact ImageNet three-file layout.
    Synth(cmd_synth::SynthArgs),
    /// Train AlexNet on preprocessed shards.
    Train(cmd_train::TrainArgs),
    /// Evaluate a checkpoint on the validation shards (centre crop and 10-crop).
    Eval(cmd_train::EvalArgs),
    /// Classify image files with a checkpoint: top-5 classes and probabilities.
    Predict(cmd_train::PredictArgs),
    /// The paper's figures as PNG: conv1 filters, top-5 predictions, nearest
    /// neighbours in fc7, training-error curves of several runs.
    Show(cmd_show::ShowArgs),
    /// No ImageNet needed: synthesise a dataset, preprocess, train alexnet-small, evaluate.
    Quickstart(cmd_train::QuickstartArgs),
    /// Benchmarks (release mode): preprocess, loader, train-step.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Preprocess(args) => {
            without_huge_pages();
            cmd_preprocess::run_preprocess(args)
        }
        Command::Synth(args) => cmd_synth::run_synth(args),
        Command::Train(args) => cmd_train::run_train(args),
        Command::Eval(args) => cmd_train::run_eval(args),
        Command::Predict(args) => cmd_train::run_predict(args),
        Command::Show(args) => cmd_show::run(args),
        Command::Quickstart(args) => cmd_train::run_quickstart(args),
        Command::Bench(args) => bench::run(args),
    }
}
