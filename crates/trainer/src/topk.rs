//! Top-1 / top-5 counting and loss accumulation.

use crate::error::{Result, TrainerError};

/// How many classes rank strictly ahead of `label` in `scores`.
///
/// Ties are broken by class index (the lower index ranks first), the order
/// a stable sort by descending score gives, so a constant output does not
/// count as correct for every label. A NaN score for the label ranks last.
pub fn rank_of_label(scores: &[f32], label: usize) -> usize {
    let target = scores[label];
    if target.is_nan() {
        return scores.len();
    }
    scores
        .iter()
        .enumerate()
        .filter(|&(c, &s)| s > target || (s == target && c < label))
        .count()
}

/// Running counts of top-1 and top-5 hits (and of the loss) over many batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopKCounter {
    /// Images counted.
    pub images: u64,
    /// Images whose label ranked first.
    pub top1_correct: u64,
    /// Images whose label ranked among the first five.
    pub top5_correct: u64,
    /// Sum over images of the per-image loss (mean loss x batch size per batch).
    pub loss_sum: f64,
}

impl TopKCounter {
    /// Counts one batch of scores (`[n, num_classes]`, row-major; logits or
    /// probabilities, only the order matters) against `labels` (`[n]`).
    pub fn add_scores(&mut self, scores: &[f32], num_classes: usize, labels: &[i64]) -> Result<()> {
        if num_classes == 0 || scores.len() != labels.len() * num_classes {
            return Err(TrainerError::Shape(format!(
                "{} scores do not form {} rows of {} classes",
                scores.len(),
                labels.len(),
                num_classes
            )));
        }
        for (row, &label) in scores.chunks_exact(num_classes).zip(labels) {
            let label = usize::try_from(label)
                .ok()
                .filter(|&l| l < num_classes)
                .ok_or(TrainerError::LabelOutOfRange {
                    label,
                    classes: num_classes,
                })?;
            let rank = rank_of_label(row, label);
            self.images += 1;
            self.top1_correct += u64::from(rank < 1);
            self.top5_correct += u64::from(rank < 5);
        }
        Ok(())
    }

    /// Adds a batch's mean loss, weighted by its size.
    pub fn add_loss(&mut self, mean_loss: f64, batch_images: usize) {
        self.loss_sum += mean_loss * batch_images as f64;
    }

    /// Adds another counter's counts (e.g. of another batch or rank).
    pub fn add(&mut self, other: &TopKCounter) {
        self.images += other.images;
        self.top1_correct += other.top1_correct;
        self.top5_correct += other.top5_correct;
        self.loss_sum += other.loss_sum;
    }

    /// Top-1 error in percent (100 when nothing was counted).
    pub fn top1_error(&self) -> f64 {
        error_pct(self.top1_correct, self.images)
    }

    /// Top-5 error in percent (100 when nothing was counted).
    pub fn top5_error(&self) -> f64 {
        error_pct(self.top5_correct, self.images)
    }

    /// Mean loss per image (NaN when nothing was counted).
    pub fn mean_loss(&self) -> f64 {
        if self.images == 0 {
            f64::NAN
        } else {
            self.loss_sum / self.images as f64
        }
    }
}

fn error_pct(correct: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        100.0 * (total - correct) as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_every_count() {
        let mut a = TopKCounter {
            images: 3,
            top1_correct: 1,
            top5_correct: 2,
            loss_sum: 1.5,
        };
        a.add(&TopKCounter {
            images: 4,
            top1_correct: 2,
            top5_correct: 4,
            loss_sum: 0.25,
        });
        assert_eq!(
            a,
            TopKCounter {
                images: 7,
                top1_correct: 3,
                top5_correct: 6,
                loss_sum: 1.75,
            }
        );
    }

    #[test]
    fn counts_top1_and_top5_on_hand_made_logits() {
        // 7 classes, 4 images.
        #[rustfmt::skip]
        let logits = [
            // label 2 ranks first
            0.1, 0.2, 0.9, 0.0, 0.0, 0.0, 0.0,
            // label 0 ranks third (behind 1 and 6): top-5, not top-1
            0.5, 0.8, 0.1, 0.1, 0.1, 0.1, 0.7,
            // label 6 ranks last: neither
            0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3,
            // label 3 ranks fifth exactly (behind 0,1,2,4): top-5
            5.0, 4.0, 3.0, 1.0, 2.0, 0.0, -1.0,
        ];
        let labels = [2, 0, 6, 3];
        let mut c = TopKCounter::default();
        c.add_scores(&logits, 7, &labels).unwrap();
        assert_eq!(c.images, 4);
        assert_eq!(c.top1_correct, 1);
        assert_eq!(c.top5_correct, 3);
        assert_eq!(c.top1_error(), 75.0);
        assert_eq!(c.top5_error(), 25.0);
    }

    #[test]
    fn rank_breaks_ties_by_class_index() {
        let constant = [0.0f32; 10];
        assert_eq!(rank_of_label(&constant, 0), 0);
        assert_eq!(rank_of_label(&constant, 4), 4);
        assert_eq!(rank_of_label(&constant, 5), 5);
        let mut c = TopKCounter::default();
        let labels: Vec<i64> = (0..10).collect();
        c.add_scores(&constant.repeat(10), 10, &labels).unwrap();
        // a constant output is right for label 0 only (top-1), 0..4 (top-5)
        assert_eq!(c.top1_correct, 1);
        assert_eq!(c.top5_correct, 5);
    }

    #[test]
    fn nan_scores_count_as_wrong() {
        let s = [f32::NAN, 0.0, 1.0];
        assert_eq!(rank_of_label(&s, 0), 3);
    }

    #[test]
    fn rejects_bad_labels_and_shapes() {
        let mut c = TopKCounter::default();
        assert!(c.add_scores(&[0.0; 6], 3, &[0, 3]).is_err());
        assert!(c.add_scores(&[0.0; 6], 3, &[0, -1]).is_err());
        assert!(c.add_scores(&[0.0; 5], 3, &[0, 1]).is_err());
    }

    #[test]
    fn loss_is_weighted_by_batch_size() {
        let mut c = TopKCounter::default();
        c.add_scores(&[1.0, 0.0], 2, &[0]).unwrap();
        c.add_loss(2.0, 1);
        c.add_scores(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 2, &[0, 0, 0])
            .unwrap();
        c.add_loss(1.0, 3);
        assert!((c.mean_loss() - 1.25).abs() < 1e-12);
    }
}
