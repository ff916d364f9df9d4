//! Per-epoch metrics and the files they go to (`metrics.jsonl`, `metrics.csv`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{Result, TrainerError};

/// What one epoch produced. Errors are in percent.
///
/// The learning figures (losses, errors, `lr`, `step`) are a deterministic
/// function of the seed on the CPU; the timing figures (`images_per_sec`,
/// `data_wait_share`, `*_seconds`) are measurements and vary run to run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Optimizer steps done when the epoch ended (all epochs).
    pub step: u64,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean training cross-entropy over the epoch (augmented images, dropout on).
    pub train_loss: f64,
    /// Training top-1 error, percent (same forward passes as the loss).
    pub train_top1_error: f64,
    /// Training top-5 error, percent.
    pub train_top5_error: f64,
    /// Mean validation cross-entropy (centre crop).
    pub val_loss: f64,
    /// Validation top-1 error, percent (centre crop).
    pub val_top1_error: f64,
    /// Validation top-5 error, percent (centre crop).
    pub val_top5_error: f64,
    /// Images trained on in the epoch.
    pub train_images: u64,
    /// Training throughput: images / training wall time.
    pub images_per_sec: f64,
    /// Share (0..1) of the training wall time spent waiting for the loader.
    pub data_wait_share: f64,
    /// Training wall time, seconds.
    pub train_seconds: f64,
    /// Validation wall time, seconds.
    pub val_seconds: f64,
}

impl EpochMetrics {
    /// The deterministic part (everything except timings), for comparisons.
    pub fn learning_figures(&self) -> (usize, u64, f64, [f64; 6], u64) {
        (
            self.epoch,
            self.step,
            self.lr,
            [
                self.train_loss,
                self.train_top1_error,
                self.train_top5_error,
                self.val_loss,
                self.val_top1_error,
                self.val_top5_error,
            ],
            self.train_images,
        )
    }
}

impl EpochMetrics {
    /// Every figure by its column name in `metrics.csv`, in the file's
    /// order (the TensorBoard scalars of an epoch use the same names).
    /// The counts (`epoch`, `step`, `train_images`) are exact as `f64`.
    pub fn columns(&self) -> [(&'static str, f64); 14] {
        [
            ("epoch", self.epoch as f64),
            ("step", self.step as f64),
            ("lr", self.lr),
            ("train_loss", self.train_loss),
            ("train_top1_error", self.train_top1_error),
            ("train_top5_error", self.train_top5_error),
            ("val_loss", self.val_loss),
            ("val_top1_error", self.val_top1_error),
            ("val_top5_error", self.val_top5_error),
            ("train_images", self.train_images as f64),
            ("images_per_sec", self.images_per_sec),
            ("data_wait_share", self.data_wait_share),
            ("train_seconds", self.train_seconds),
            ("val_seconds", self.val_seconds),
        ]
    }
}

/// Writes the metrics of a run as JSON lines (`metrics.jsonl`) and CSV
/// (`metrics.csv`) in the run directory. Both files are rewritten whole and
/// atomically after every epoch from the full history, so a run resumed from
/// a checkpoint never shows an epoch twice.
pub struct MetricsFiles {
    jsonl: PathBuf,
    csv: PathBuf,
}

impl MetricsFiles {
    /// The metrics files of `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            jsonl: run_dir.join("metrics.jsonl"),
            csv: run_dir.join("metrics.csv"),
        }
    }

    /// Path of the JSON-lines file.
    pub fn jsonl_path(&self) -> &Path {
        &self.jsonl
    }

    /// Path of the CSV file.
    pub fn csv_path(&self) -> &Path {
        &self.csv
    }

    /// Rewrites both files with `history`.
    pub fn write(&self, history: &[EpochMetrics]) -> Result<()> {
        let mut jsonl = String::new();
        let names: Vec<&str> = EpochMetrics::default()
            .columns()
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let mut csv = names.join(",");
        csv.push('\n');
        for m in history {
            let line = serde_json::to_string(m).map_err(|source| TrainerError::Json {
                path: self.jsonl.clone(),
                source,
            })?;
            jsonl.push_str(&line);
            jsonl.push('\n');
            let row: Vec<String> = m.columns().iter().map(|(_, v)| v.to_string()).collect();
            csv.push_str(&row.join(","));
            csv.push('\n');
        }
        write_atomic(&self.jsonl, jsonl.as_bytes())?;
        write_atomic(&self.csv, csv.as_bytes())
    }

    /// Reads `metrics.jsonl` back.
    pub fn read(&self) -> Result<Vec<EpochMetrics>> {
        let text =
            std::fs::read_to_string(&self.jsonl).map_err(crate::error::io_err(&self.jsonl))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|source| TrainerError::Json {
                    path: self.jsonl.clone(),
                    source,
                })
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) fn sample(epoch: usize) -> EpochMetrics {
    EpochMetrics {
        epoch,
        step: 10 * epoch as u64,
        lr: 0.01,
        train_loss: 2.0 / epoch as f64,
        train_top1_error: 80.0,
        train_top5_error: 40.0,
        val_loss: 2.5,
        val_top1_error: 75.0 - epoch as f64,
        val_top5_error: 35.0,
        train_images: 1280,
        images_per_sec: 100.0,
        data_wait_share: 0.01,
        train_seconds: 12.8,
        val_seconds: 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_jsonl_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let files = MetricsFiles::new(dir.path());
        assert_eq!(files.jsonl_path(), dir.path().join("metrics.jsonl"));
        assert_eq!(files.csv_path(), dir.path().join("metrics.csv"));
        let history = vec![sample(1), sample(2)];
        files.write(&history).unwrap();
        assert_eq!(files.read().unwrap(), history);
        let csv = std::fs::read_to_string(files.csv_path()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("epoch,step,lr,"));
        assert!(lines[2].starts_with("2,20,0.01,1,"));
        // rewriting with a shorter history drops the extra epoch
        files.write(&history[..1]).unwrap();
        assert_eq!(files.read().unwrap().len(), 1);
        // blank lines in the JSON-lines file are ignored
        std::fs::write(
            files.jsonl_path(),
            format!("\n{}\n  \n", serde_json::to_string(&sample(4)).unwrap()),
        )
        .unwrap();
        assert_eq!(files.read().unwrap(), vec![sample(4)]);
    }

    #[test]
    fn learning_figures_are_every_field_but_the_timings() {
        let mut m = sample(4);
        assert_eq!(
            m.learning_figures(),
            (4, 40, 0.01, [0.5, 80.0, 40.0, 2.5, 71.0, 35.0], 1280)
        );
        m.images_per_sec = 1.0;
        m.data_wait_share = 0.5;
        m.train_seconds = 99.0;
        m.val_seconds = 9.0;
        assert_eq!(m.learning_figures(), sample(4).learning_figures());
    }
}
