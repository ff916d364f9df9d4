//! Renders the trainer's events: progress bars on stderr, a line per epoch
//! on stdout.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use trainer::{CheckpointReason, EpochMetrics, LrDecision, RunSummary, TrainEvent, TrainSink};

/// A progress bar in the project's style (hidden when `visible` is false).
pub fn progress_bar(visible: bool, len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar
}

/// Prints a run's events: bars (unless `bars` is false) and the lines
/// scripts read.
pub struct TrainPrinter {
    bars: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl TrainPrinter {
    /// A printer; `bars` false prints the lines only.
    pub fn new(bars: bool) -> Self {
        Self {
            bars,
            bar: Mutex::new(None),
        }
    }

    fn replace_bar(&self, bar: Option<ProgressBar>) {
        let mut slot = self.bar.lock().expect("progress lock");
        if let Some(old) = slot.take() {
            old.finish_and_clear();
        }
        *slot = bar;
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bar.lock().expect("progress lock").as_ref() {
            f(bar);
        }
    }
}

impl TrainSink for TrainPrinter {
    fn event(&self, event: &TrainEvent<'_>) {
        match event {
            TrainEvent::Started(s) => print_started(s),
            TrainEvent::FreshStart { run_dir } => println!(
                "--resume: {} has no checkpoint yet; starting from the beginning",
                run_dir.display()
            ),
            TrainEvent::Resumed {
                checkpoint,
                epochs_done,
                step,
                batches_into_epoch,
            } => print_resumed(checkpoint, *epochs_done, *step, *batches_into_epoch),
            TrainEvent::EpochStarted {
                epoch,
                epochs,
                batches,
                done,
            } => {
                let bar = progress_bar(self.bars, *batches as u64);
                bar.set_prefix(format!("epoch {epoch}/{epochs}"));
                bar.set_position(*done as u64);
                self.replace_bar(Some(bar));
            }
            TrainEvent::Step(r) => self.with_bar(|bar| {
                bar.set_message(format!(
                    "loss {:.4} (last {:.4}) | {:.1} img/s | data wait {:.1}%",
                    r.mean_loss,
                    r.loss,
                    r.images_per_sec,
                    100.0 * r.data_wait_share
                ));
                bar.set_position(r.batch as u64);
            }),
            TrainEvent::ValidationStarted { epoch, batches } => {
                let bar = progress_bar(self.bars, *batches as u64);
                bar.set_prefix(format!("val {epoch}"));
                self.replace_bar(Some(bar));
            }
            TrainEvent::EvalBatch { done, .. } => {
                self.with_bar(|bar| bar.set_position(*done as u64))
            }
            TrainEvent::EpochFinished {
                metrics,
                epochs,
                allreduce_share,
                decision,
                reason,
            } => {
                self.replace_bar(None);
                print_epoch(metrics, *epochs, *allreduce_share);
                if let LrDecision::Reduced { from, to } = decision {
                    println!(
                        "learning rate {from} -> {to} ({})",
                        reason.unwrap_or("schedule")
                    );
                }
            }
            TrainEvent::Checkpointed { dir, why } => {
                if *why == CheckpointReason::Periodic {
                    self.with_bar(|bar| bar.println(format!("checkpoint: {}", dir.display())));
                } else if *why == CheckpointReason::Stop {
                    self.replace_bar(None);
                }
            }
        }
    }
}

/// The run's first lines: what trains on what, and over how many ranks.
fn print_started(s: &RunSummary) {
    println!(
        "training {} ({} parameters, {} classes, init {}, {}) on {} ({}) | {} train / {} val images | batch {} | {} batches per epoch",
        s.model,
        s.parameters,
        s.classes,
        s.init,
        s.activation,
        s.devices,
        s.precision,
        s.train_images,
        s.val_images,
        s.batch_size,
        s.batches_per_epoch
    );
    for warning in &s.data_warnings {
        eprintln!("warning: {warning}");
    }
    if s.world_size > 1 {
        println!(
            "data parallel: {} ranks over {}, {} images per rank per batch, {:.1} MB of gradients summed per step in {} buckets",
            s.world_size,
            s.transport,
            s.batch_size / s.world_size,
            s.allreduce_bytes as f64 / 1e6,
            s.allreduce_buckets
        );
    }
}

fn print_resumed(checkpoint: &Path, epochs_done: usize, step: u64, batches_into_epoch: usize) {
    let within = if batches_into_epoch > 0 {
        format!(
            ", {batches_into_epoch} batches into epoch {}",
            epochs_done + 1
        )
    } else {
        String::new()
    };
    println!(
        "resuming from {} (epoch {epochs_done} done, step {step}{within})",
        checkpoint.display()
    );
}

/// An epoch's line.
fn print_epoch(m: &EpochMetrics, epochs: usize, allreduce_share: f64) {
    let comm = if allreduce_share > 0.0 {
        format!(", all-reduce {:.1}%", 100.0 * allreduce_share)
    } else {
        String::new()
    };
    println!(
        "epoch {}/{}: train loss {:.4}, top-1 {:.2}%, top-5 {:.2}% | val loss {:.4}, top-1 {:.2}%, top-5 {:.2}% | lr {} | {:.1} img/s, data wait {:.1}%{} | {:.0}s + {:.0}s val",
        m.epoch,
        epochs,
        m.train_loss,
        m.train_top1_error,
        m.train_top5_error,
        m.val_loss,
        m.val_top1_error,
        m.val_top5_error,
        m.lr,
        m.images_per_sec,
        100.0 * m.data_wait_share,
        comm,
        m.train_seconds,
        m.val_seconds
    );
}

/// Draws the evaluation passes' [`TrainEvent::EvalBatch`] events as one
/// bar per pass.
pub struct EvalBars {
    visible: bool,
    current: RefCell<Option<(String, ProgressBar)>>,
}

impl EvalBars {
    /// Bars on stderr when `visible`.
    pub fn new(visible: bool) -> Self {
        Self {
            visible,
            current: RefCell::new(None),
        }
    }
}

impl TrainSink for EvalBars {
    /// Shows the progress of each pass on its own bar.
    fn event(&self, event: &TrainEvent<'_>) {
        let TrainEvent::EvalBatch { pass, done, total } = event else {
            return;
        };
        let mut current = self.current.borrow_mut();
        if current.as_ref().is_none_or(|(p, _)| p != pass) {
            if let Some((_, old)) = current.take() {
                old.finish_and_clear();
            }
            let bar = progress_bar(self.visible, *total as u64);
            bar.set_prefix(pass.to_string());
            *current = Some((pass.to_string(), bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_position(*done as u64);
        }
    }
}

impl Drop for EvalBars {
    fn drop(&mut self) {
        if let Some((_, bar)) = self.current.get_mut().take() {
            bar.finish_and_clear();
        }
    }
}
