//! Training, evaluation and prediction for the 2012 AlexNet.
//!
//! The pieces: the paper's learning-rate schedule ([`schedule`]), top-1/top-5
//! counting ([`topk`]), 10-crop softmax averaging ([`views`]), per-epoch
//! metrics files ([`metrics`]) and their PNG plot ([`plot`]).

pub mod atomic;
pub mod error;
pub mod metrics;
pub mod plot;
pub mod schedule;
pub mod topk;
pub mod views;

pub use error::{Result, TrainerError};
pub use metrics::{EpochMetrics, MetricsFiles};
pub use schedule::{LrDecision, LrSchedule, ScheduleRule};
pub use topk::TopKCounter;
