//! TensorBoard's event files of a run: read back by the project's reader
//! and by the `tensorboard` package's own `EventAccumulator`, they hold
//! every scalar of `metrics.csv` at its step with its value, the per-step
//! series at every step, and the conv1 kernels per epoch; a run killed
//! after a checkpoint and resumed shows every step exactly once, with the
//! values of an uninterrupted run.
//!
//! The Python half needs python3 with the `tensorboard` package (`.venv`
//! from `scripts/setup.sh --python`); it is skipped with a message where
//! there is none, and required where `ALEXNET_REQUIRE_PYTHON` is set (CI).

mod common;
#[path = "../../model/tests/support/reference_python.rs"]
mod reference_python;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;

use trainer::tensorboard::{read_events, tensorboard_dir, EventLog};
use trainer::{
    CheckpointEvery, MetricsFiles, NoEvents, SingleProcess, TrainConfig, TrainEvent, TrainSink,
    Trainer,
};

/// Steps of a run of 3 epochs of 6 batches.
const STEPS: u64 = 18;
const PER_STEP: [&str; 5] = [
    "train/loss",
    "train/top1_error",
    "train/learning_rate",
    "train/images_per_sec",
    "train/data_wait_share",
];

/// Panics (as a killed process vanishes) once step `at` is reported.
struct DieAtStep(u64);

impl TrainSink for DieAtStep {
    fn event(&self, event: &TrainEvent<'_>) {
        if let TrainEvent::Step(r) = event {
            if r.step == self.0 {
                panic!("killed at step {}", r.step);
            }
        }
    }
}

fn config(data: &Path, run: &Path) -> TrainConfig {
    let mut cfg = common::tiny_config(data, run);
    cfg.epochs = 3;
    cfg.checkpoint_every = CheckpointEvery::Steps(4);
    cfg.tensorboard_every = 1;
    cfg
}

/// Per tag, its `(step, value)` points in the order written.
fn series(log: &EventLog) -> BTreeMap<String, Vec<(u64, f32)>> {
    let mut out: BTreeMap<String, Vec<(u64, f32)>> = BTreeMap::new();
    for s in &log.scalars {
        out.entry(s.tag.clone())
            .or_default()
            .push((s.step, s.value));
    }
    out
}

fn steps_of(points: &[(u64, f32)]) -> Vec<u64> {
    points.iter().map(|p| p.0).collect()
}

#[test]
fn event_files_hold_the_metrics_and_each_step_once_after_a_kill_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 4); // 48 train images: 6 batches of 8
    let never = AtomicBool::new(false);

    // An uninterrupted run.
    let full = tmp.path().join("full");
    Trainer::new(config(&data, &full), &SingleProcess)
        .unwrap()
        .run(&never, &NoEvents)
        .unwrap();

    // The same run killed at step 11 (its last checkpoint: step 10, in
    // the middle of epoch 2; step 11's events were written), then resumed.
    let killed = tmp.path().join("killed");
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Trainer::new(config(&data, &killed), &SingleProcess)
            .unwrap()
            .run(&never, &DieAtStep(11))
    }));
    assert!(died.is_err(), "the sink should have ended the run");
    let before = series(&read_events(&tensorboard_dir(&killed)).unwrap());
    assert_eq!(
        steps_of(&before["train/loss"]),
        (1..=11).collect::<Vec<_>>(),
        "the killed run wrote up to its last step"
    );
    let mut cfg = config(&data, &killed);
    cfg.resume = true;
    Trainer::new(cfg, &SingleProcess)
        .unwrap()
        .run(&never, &NoEvents)
        .unwrap();

    let full_log = read_events(&tensorboard_dir(&full)).unwrap();
    let log = read_events(&tensorboard_dir(&killed)).unwrap();
    assert_eq!(full_log.files.len(), 1);
    assert_eq!(log.files.len(), 2, "the resumed run writes a second file");
    assert!(log.damaged.is_empty());
    let (full_series, resumed) = (series(&full_log), series(&log));

    // Every per-step series at every step, once.
    for tag in PER_STEP {
        assert_eq!(
            steps_of(&resumed[tag]),
            (1..=STEPS).collect::<Vec<_>>(),
            "{tag}"
        );
    }
    // The learning figures equal the uninterrupted run's, step by step
    // (the timings are measurements and differ).
    for tag in ["train/loss", "train/top1_error", "train/learning_rate"] {
        assert_eq!(resumed[tag], full_series[tag], "{tag}");
    }
    assert_eq!(resumed["train/learning_rate"][0].1, 0.03);

    // Each metrics.csv column at each epoch's last step, as 32-bit floats.
    let history = MetricsFiles::new(&killed).read().unwrap();
    assert_eq!(history.len(), 3);
    for m in &history {
        for (name, value) in m.columns() {
            if name == "step" {
                continue;
            }
            let tag = format!("epoch/{name}");
            let at: Vec<f32> = resumed[&tag]
                .iter()
                .filter(|p| p.0 == m.step)
                .map(|p| p.1)
                .collect();
            assert_eq!(at, [value as f32], "{tag} at step {}", m.step);
        }
    }
    assert_eq!(steps_of(&resumed["epoch/val_top1_error"]), [6, 12, 18]);

    // The conv1 kernels per epoch, as PNG images of the filters figure.
    let images: Vec<(String, u64)> = log.images.iter().map(|i| (i.tag.clone(), i.step)).collect();
    assert_eq!(
        images,
        [6, 12, 18].map(|s| ("conv1/filters".to_string(), s))
    );
    for image in &log.images {
        let decoded = png::Decoder::new(std::io::Cursor::new(&image.encoded[..]))
            .read_info()
            .unwrap();
        let info = decoded.info();
        assert_eq!((info.width, info.height), image.size);
    }
    // The last epoch's image shows the trained kernels: it differs from the
    // first epoch's.
    assert_ne!(log.images[0].encoded, log.images[2].encoded);

    tensorboard_reads_the_same(&tensorboard_dir(&killed), &log);
}

/// What `EventAccumulator` (TensorBoard's own reader) finds in `dir`, as
/// JSON: scalars per tag as `[step, value]`, images per tag as
/// `[step, width, height]`.
const ACCUMULATE: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
ea.Reload()
tags = ea.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in ea.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.width, e.height] for e in ea.Images(t)] for t in tags["images"]},
}))
"#;

fn tensorboard_reads_the_same(dir: &Path, log: &EventLog) {
    let test = "event_files_hold_the_metrics_and_each_step_once_after_a_kill_and_resume";
    let Some(python) = reference_python::python_with(test, &["tensorboard"]) else {
        return;
    };
    let out = Command::new(python)
        .args(["-c", ACCUMULATE])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "EventAccumulator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = series(log);
    let theirs = found["scalars"].as_object().unwrap();
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "the same scalar tags"
    );
    for (tag, points) in &ours {
        let theirs: Vec<(u64, f32)> = theirs[tag]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32))
            .collect();
        assert_eq!(&theirs, points, "{tag}");
    }
    let images = &found["images"]["conv1/filters"];
    let theirs: Vec<(u64, u32, u32)> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |i: usize| p[i].as_u64().unwrap();
            (n(0), n(1) as u32, n(2) as u32)
        })
        .collect();
    let ours: Vec<(u64, u32, u32)> = log
        .images
        .iter()
        .map(|i| (i.step, i.size.0, i.size.1))
        .collect();
    assert_eq!(theirs, ours);
}
