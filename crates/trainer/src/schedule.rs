//! Learning-rate schedules: the paper's plateau rule and a fixed step rule.
//!
//! The paper divides the learning rate by 10 "when the validation error rate
//! stopped improving with the current learning rate", three times in all.
//! [`LrSchedule::plateau`] implements that with a patience (epochs without a
//! new best validation top-1 error); [`LrSchedule::step`] divides every
//! `step_epochs` epochs instead. The whole state is serialisable so a
//! checkpoint can carry it.

use serde::{Deserialize, Serialize};

/// Which rule decides when to lower the learning rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleRule {
    /// Lower the rate after `patience` epochs without a new best validation
    /// error (an improvement must beat the best by more than `min_delta`
    /// percentage points).
    Plateau {
        /// Epochs without improvement before a reduction.
        patience: usize,
        /// Smallest decrease of the error (percentage points) that counts.
        min_delta: f64,
    },
    /// Lower the rate after every `step_epochs` epochs.
    Step {
        /// Epochs between reductions.
        step_epochs: usize,
    },
}

/// What [`LrSchedule::end_epoch`] decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrDecision {
    /// The rate stays.
    Keep,
    /// The rate was lowered.
    Reduced {
        /// Rate before.
        from: f64,
        /// Rate after.
        to: f64,
    },
}

/// A learning-rate schedule and its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The rule.
    pub rule: ScheduleRule,
    /// Multiplier applied at each reduction (paper: 0.1).
    pub factor: f64,
    /// Most reductions allowed (paper: 3).
    pub max_reductions: usize,
    /// The current learning rate.
    pub lr: f64,
    /// Reductions made so far.
    pub reductions: usize,
    /// Best validation top-1 error (percent) seen since the last reduction
    /// (plateau rule), `None` before the first epoch.
    pub best_error: Option<f64>,
    /// Epochs since `best_error` last improved.
    pub epochs_without_improvement: usize,
}

impl LrSchedule {
    /// The paper's rule: divide by 10 after `patience` epochs without a new
    /// best validation error, at most three times.
    pub fn plateau(base_lr: f64, patience: usize) -> Self {
        Self::new(
            base_lr,
            ScheduleRule::Plateau {
                patience: patience.max(1),
                min_delta: 0.0,
            },
        )
    }

    /// Divide by 10 every `step_epochs` epochs, at most three times.
    pub fn step(base_lr: f64, step_epochs: usize) -> Self {
        Self::new(
            base_lr,
            ScheduleRule::Step {
                step_epochs: step_epochs.max(1),
            },
        )
    }

    fn new(base_lr: f64, rule: ScheduleRule) -> Self {
        Self {
            rule,
            factor: 0.1,
            max_reductions: 3,
            lr: base_lr,
            reductions: 0,
            best_error: None,
            epochs_without_improvement: 0,
        }
    }

    /// The learning rate to use now.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Call once after each epoch with the number of epochs completed so far
    /// (1-based) and that epoch's validation top-1 error in percent. Returns
    /// whether the rate for the next epoch was lowered.
    pub fn end_epoch(&mut self, epochs_done: usize, val_top1_error: f64) -> LrDecision {
        let due = match self.rule {
            ScheduleRule::Plateau {
                patience,
                min_delta,
            } => {
                let improved = match self.best_error {
                    None => true,
                    Some(best) => val_top1_error < best - min_delta,
                };
                if improved {
                    self.best_error = Some(val_top1_error);
                    self.epochs_without_improvement = 0;
                    false
                } else {
                    self.epochs_without_improvement += 1;
                    self.epochs_without_improvement >= patience
                }
            }
            ScheduleRule::Step { step_epochs } => {
                epochs_done > 0 && epochs_done.is_multiple_of(step_epochs)
            }
        };
        if !due || self.reductions >= self.max_reductions {
            return LrDecision::Keep;
        }
        let from = self.lr;
        self.lr *= self.factor;
        self.reductions += 1;
        // A new rate starts a new plateau: the error must stop improving
        // again, counted from here, before the next reduction.
        self.epochs_without_improvement = 0;
        LrDecision::Reduced { from, to: self.lr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_reduces_after_patience_epochs_without_improvement() {
        let mut s = LrSchedule::plateau(0.01, 2);
        assert_eq!(s.end_epoch(1, 80.0), LrDecision::Keep); // first value: best
        assert_eq!(s.end_epoch(2, 70.0), LrDecision::Keep); // improved
        assert_eq!(s.end_epoch(3, 70.0), LrDecision::Keep); // equal: not an improvement (1)
        match s.end_epoch(4, 71.0) {
            LrDecision::Reduced { from, to } => {
                assert_eq!(from, 0.01);
                assert!((to - 0.001).abs() < 1e-15);
            }
            LrDecision::Keep => panic!("expected a reduction after 2 flat epochs"),
        }
        assert_eq!(s.reductions, 1);
        // counter restarted: one flat epoch is not enough again
        assert_eq!(s.end_epoch(5, 72.0), LrDecision::Keep);
        // an improvement resets the count
        assert_eq!(s.end_epoch(6, 60.0), LrDecision::Keep);
        assert_eq!(s.end_epoch(7, 61.0), LrDecision::Keep);
        assert!(matches!(s.end_epoch(8, 61.0), LrDecision::Reduced { .. }));
        assert_eq!(s.reductions, 2);
    }

    #[test]
    fn plateau_stops_after_three_reductions() {
        let mut s = LrSchedule::plateau(1.0, 1);
        s.end_epoch(1, 50.0);
        let mut reductions = 0;
        for e in 2..20 {
            if let LrDecision::Reduced { .. } = s.end_epoch(e, 50.0) {
                reductions += 1;
            }
        }
        assert_eq!(reductions, 3);
        assert!((s.lr() - 1e-3).abs() < 1e-12);
    }

    #[test]
    fn plateau_min_delta_requires_a_real_improvement() {
        let mut s = LrSchedule::plateau(0.1, 1);
        if let ScheduleRule::Plateau { min_delta, .. } = &mut s.rule {
            *min_delta = 0.5;
        }
        s.end_epoch(1, 50.0);
        assert!(matches!(s.end_epoch(2, 49.8), LrDecision::Reduced { .. }));
        assert_eq!(s.end_epoch(3, 40.0), LrDecision::Keep);
    }

    #[test]
    fn step_schedule_reduces_every_n_epochs() {
        let mut s = LrSchedule::step(0.01, 30);
        let mut at = Vec::new();
        for e in 1..=150 {
            if let LrDecision::Reduced { .. } = s.end_epoch(e, 50.0) {
                at.push(e);
            }
        }
        assert_eq!(at, vec![30, 60, 90]);
        assert!((s.lr() - 1e-5).abs() < 1e-15);
    }

    #[test]
    fn step_schedule_does_not_reduce_before_the_first_epoch() {
        // 0 is a multiple of every step; the call for "no epoch done yet"
        // must still keep the rate.
        let mut s = LrSchedule::step(0.01, 3);
        assert_eq!(s.end_epoch(0, 50.0), LrDecision::Keep);
        assert_eq!(s.reductions, 0);
        assert_eq!(s.lr(), 0.01);
        assert_eq!(s.end_epoch(1, 50.0), LrDecision::Keep);
        assert_eq!(s.end_epoch(2, 50.0), LrDecision::Keep);
        assert!(matches!(s.end_epoch(3, 50.0), LrDecision::Reduced { .. }));
    }

    #[test]
    fn zero_patience_and_zero_step_count_as_one() {
        let mut s = LrSchedule::plateau(1.0, 0);
        assert_eq!(
            s.rule,
            ScheduleRule::Plateau {
                patience: 1,
                min_delta: 0.0
            }
        );
        s.end_epoch(1, 50.0);
        assert!(matches!(s.end_epoch(2, 50.0), LrDecision::Reduced { .. }));
        let mut s = LrSchedule::step(1.0, 0);
        assert_eq!(s.rule, ScheduleRule::Step { step_epochs: 1 });
        assert!(matches!(s.end_epoch(1, 50.0), LrDecision::Reduced { .. }));
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = LrSchedule::plateau(0.01, 3);
        s.end_epoch(1, 70.0);
        s.end_epoch(2, 71.0);
        let text = serde_json::to_string(&s).unwrap();
        let back: LrSchedule = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }
}
