//! Per-class top-1 and top-5 error: the list read after the headline
//! number, as a tab-separated file.

use std::path::Path;

use loader::ClassEntry;

use crate::atomic::write_atomic;
use crate::error::{Result, TrainerError};
use crate::topk::rank_of_label;

/// One class's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Images of the class.
    pub images: u64,
    /// Those whose label ranked first.
    pub top1_correct: u64,
    /// Those whose label ranked among the first five.
    pub top5_correct: u64,
}

impl ClassCounts {
    /// Top-1 error in percent (NaN for a class without images).
    pub fn top1_error(&self) -> f64 {
        pct_wrong(self.top1_correct, self.images)
    }
    /// Top-5 error in percent (NaN for a class without images).
    pub fn top5_error(&self) -> f64 {
        pct_wrong(self.top5_correct, self.images)
    }
}

fn pct_wrong(correct: u64, total: u64) -> f64 {
    if total == 0 {
        f64::NAN
    } else {
        100.0 * (total - correct) as f64 / total as f64
    }
}

/// Counts per class, indexed by class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerClass {
    /// `counts[c]`: class `c`.
    pub counts: Vec<ClassCounts>,
}

impl PerClass {
    /// Zero counts for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            counts: vec![ClassCounts::default(); num_classes],
        }
    }

    /// Counts a batch of scores `[n, num_classes]` (row-major) against
    /// `labels`, ranking as [`crate::TopKCounter`] does.
    pub fn add_scores(&mut self, scores: &[f32], labels: &[i64]) -> Result<()> {
        let c = self.counts.len();
        if c == 0 || scores.len() != labels.len() * c {
            return Err(TrainerError::Shape(format!(
                "{} scores do not form {} rows of {c} classes",
                scores.len(),
                labels.len()
            )));
        }
        for (row, &label) in scores.chunks_exact(c).zip(labels) {
            let l = usize::try_from(label)
                .ok()
                .filter(|&l| l < c)
                .ok_or(TrainerError::LabelOutOfRange { label, classes: c })?;
            let rank = rank_of_label(row, l);
            let e = &mut self.counts[l];
            e.images += 1;
            e.top1_correct += u64::from(rank < 1);
            e.top5_correct += u64::from(rank < 5);
        }
        Ok(())
    }

    /// The table: a header line, then one line per class with images,
    /// worst top-1 error first (ties by top-5 error, then class index):
    /// `index, wnid, images, top1_error_pct, top5_error_pct, words`,
    /// tab-separated. Classes without images come last, with `NaN`.
    pub fn to_tsv(&self, classes: &[ClassEntry]) -> Result<String> {
        if classes.len() != self.counts.len() {
            return Err(TrainerError::Shape(format!(
                "the class table has {} classes, the counts {}",
                classes.len(),
                self.counts.len()
            )));
        }
        let key = |e: f64| if e.is_nan() { -1.0 } else { e };
        let mut order: Vec<usize> = (0..self.counts.len()).collect();
        order.sort_by(|&a, &b| {
            let (ca, cb) = (&self.counts[a], &self.counts[b]);
            key(cb.top1_error())
                .total_cmp(&key(ca.top1_error()))
                .then(key(cb.top5_error()).total_cmp(&key(ca.top5_error())))
                .then(a.cmp(&b))
        });
        let mut out = String::from("index\twnid\timages\ttop1_error_pct\ttop5_error_pct\twords\n");
        for i in order {
            let c = &self.counts[i];
            let e = &classes[i];
            out.push_str(&format!(
                "{}\t{}\t{}\t{:.2}\t{:.2}\t{}\n",
                i,
                e.wnid,
                c.images,
                c.top1_error(),
                c.top5_error(),
                e.words
            ));
        }
        Ok(out)
    }

    /// Writes [`PerClass::to_tsv`] to `path` (replaced atomically).
    pub fn write_tsv(&self, path: &Path, classes: &[ClassEntry]) -> Result<()> {
        write_atomic(path, self.to_tsv(classes)?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(n: usize) -> Vec<ClassEntry> {
        (0..n)
            .map(|i| ClassEntry {
                index: i,
                wnid: format!("n{i:08}"),
                words: format!("class {i}"),
            })
            .collect()
    }

    #[test]
    fn counts_per_class_and_sorts_worst_first() {
        let mut p = PerClass::new(3);
        // label 0 right, label 1 wrong (class 0 ranks first), label 1 right
        let scores = [0.9, 0.1, 0.0, 0.9, 0.1, 0.0, 0.1, 0.9, 0.0];
        p.add_scores(&scores, &[0, 1, 1]).unwrap();
        assert_eq!(
            p.counts[1],
            ClassCounts {
                images: 2,
                top1_correct: 1,
                top5_correct: 2
            }
        );
        assert_eq!(p.counts[0].top1_error(), 0.0);
        let tsv = p.to_tsv(&classes(3)).unwrap();
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(lines[1], "1\tn00000001\t2\t50.00\t0.00\tclass 1");
        assert_eq!(lines[2], "0\tn00000000\t1\t0.00\t0.00\tclass 0");
        assert!(lines[3].starts_with("2\tn00000002\t0\tNaN"), "{}", lines[3]);
        assert!(p.add_scores(&scores, &[0, 1, 3]).is_err());
        assert!(p.to_tsv(&classes(2)).is_err());
    }
}
