//! Damaged and absurd checkpoint files (the `checkpoint` fuzz target's
//! inputs): a `state.json` that does not parse, or holds values a resumed
//! run would panic on or resume wrongly from, and a `latest.json` pointing
//! outside the run, are refused with an error naming the file and the
//! value, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use trainer::checkpoint::{self, StateError, LATEST_FILE, STATE_FILE};
use trainer::{train, Checkpoint, CheckpointState, TrainerError};

/// A run directory whose `latest.json` points at one checkpoint holding
/// `state` (as JSON, edited by `edit`) and empty tensor files.
fn run_with_state(root: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> (PathBuf, PathBuf) {
    let run = root.join("run");
    let dir = run.join("checkpoints").join("epoch-0001-step-000000012");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [checkpoint::PARAMS_FILE, checkpoint::MOMENTUM_FILE] {
        std::fs::write(dir.join(f), b"").unwrap();
    }
    let mut json = serde_json::to_value(state()).unwrap();
    edit(&mut json);
    std::fs::write(dir.join(STATE_FILE), json.to_string()).unwrap();
    std::fs::write(
        run.join(LATEST_FILE),
        r#"{"checkpoint": "checkpoints/epoch-0001-step-000000012"}"#,
    )
    .unwrap();
    (run, dir.join(STATE_FILE))
}

fn state() -> CheckpointState {
    CheckpointState {
        format_version: checkpoint::FORMAT_VERSION,
        architecture: trainer::Architecture::by_name("alexnet-small").unwrap(),
        num_classes: 10,
        init: "paper".into(),
        seed: 3,
        batch_size: 16,
        momentum: 0.9,
        weight_decay: 5e-4,
        epochs: 10,
        schedule: trainer::LrSchedule::plateau(0.01, 2),
        epochs_done: 1,
        step: 42,
        partial: Some(checkpoint::PartialEpoch {
            batches_done: 3,
            counter: trainer::TopKCounter {
                images: 48,
                top1_correct: 4,
                top5_correct: 20,
                loss_sum: 110.5,
            },
            train_seconds: 2.5,
            wait_seconds: 0.5,
        }),
        metrics: vec![],
        data_dir: "/data/out".into(),
    }
}

/// The error of opening the run after `edit`, and the state file's path.
fn refusal(edit: impl FnOnce(&mut serde_json::Value)) -> (TrainerError, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (run, state_path) = run_with_state(tmp.path(), edit);
    let err = Checkpoint::open(&run).unwrap_err();
    // `latest` reads the same way.
    let again = checkpoint::latest(&run).unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
    (err, state_path)
}

#[test]
fn the_state_as_written_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = run_with_state(tmp.path(), |_| {});
    let ck = Checkpoint::open(&run).unwrap();
    assert_eq!(ck.state, state());
    ck.state.check().unwrap();
}

#[test]
fn a_damaged_state_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, state_path) = run_with_state(tmp.path(), |_| {});
    let text = std::fs::read_to_string(&state_path).unwrap();
    for damaged in [
        text.as_bytes()[..text.len() / 2].to_vec(),
        b"\xff\xfe not UTF-8".to_vec(),
        b"[]".to_vec(),
        text.replace("\"batch_size\":16", "\"batch_size\":-1")
            .into_bytes(),
    ] {
        std::fs::write(&state_path, &damaged).unwrap();
        let msg = Checkpoint::open(&run).unwrap_err().to_string();
        assert!(msg.contains(&*state_path.to_string_lossy()), "{msg}");
    }
}

/// Each value a resumed run would panic on, loop on or resume wrongly
/// from, refused naming the file and the field.
#[test]
fn absurd_values_are_refused_naming_the_file_and_the_field() {
    use serde_json::json;
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 16] = [
        ("batch_size is 0", |s| s["batch_size"] = json!(0)),
        ("epochs is 0", |s| s["epochs"] = json!(0)),
        ("num_classes is 0", |s| s["num_classes"] = json!(0)),
        ("epochs_done is 11, more than the run's 10", |s| {
            s["epochs_done"] = json!(11)
        }),
        // The step counter would overflow (a panic in a debug build).
        ("step is 18446744073709551615", |s| {
            s["step"] = json!(u64::MAX)
        }),
        // Duration::from_secs_f64 panics on these.
        ("partial.train_seconds is -1", |s| {
            s["partial"]["train_seconds"] = json!(-1.0)
        }),
        ("partial.wait_seconds is 100000000000000000000", |s| {
            s["partial"]["wait_seconds"] = json!(1e300)
        }),
        ("partial.batches_done is 43, more than the 42 steps", |s| {
            s["partial"]["batches_done"] = json!(43)
        }),
        ("top-1 and 20 top-5 hits of 48", |s| {
            s["partial"]["counter"]["top1_correct"] = json!(21)
        }),
        ("momentum is -0.9", |s| s["momentum"] = json!(-0.9)),
        ("schedule.lr is -0.01", |s| {
            s["schedule"]["lr"] = json!(-0.01)
        }),
        ("schedule.factor is 0", |s| {
            s["schedule"]["factor"] = json!(0.0)
        }),
        ("schedule.rule.patience is 0", |s| {
            s["schedule"]["rule"]["patience"] = json!(0)
        }),
        ("unknown initialisation 'xavier'", |s| {
            s["init"] = json!("xavier")
        }),
        // The network would be allocated before its parameters are read.
        ("architecture: fc6/fc7 is 1099511627776 wide", |s| {
            s["architecture"]["fc_width"] = json!(1u64 << 40)
        }),
        ("parameters, more than 4294967296", |s| {
            s["architecture"]["conv_channels"] = json!([65536, 65536, 65536, 65536, 65536])
        }),
    ];
    for (expected, edit) in cases {
        let (err, state_path) = refusal(edit);
        assert!(matches!(err, TrainerError::CheckpointState { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&*state_path.to_string_lossy()) && msg.contains(expected),
            "expected `{expected}` in: {msg}"
        );
    }
    let (err, _) = refusal(|s| s["format_version"] = serde_json::json!(99));
    assert!(
        matches!(
            err,
            TrainerError::CheckpointState {
                source: StateError::FormatVersion { found: 99 },
                ..
            }
        ),
        "{err}"
    );
}

/// `latest.json` names the checkpoint to resume: one outside the run's
/// `checkpoints/` (another run's, any directory) is refused.
#[test]
fn a_latest_pointer_outside_the_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = run_with_state(tmp.path(), |_| {});
    // A valid checkpoint elsewhere, which the pointers below reach.
    let (other, _) = run_with_state(&tmp.path().join("elsewhere"), |_| {});
    let other_ck = other.join("checkpoints/epoch-0001-step-000000012");
    for pointer in [
        "../elsewhere/run/checkpoints/epoch-0001-step-000000012".to_string(),
        other_ck.display().to_string(),
        "checkpoints/../../elsewhere/run/checkpoints/epoch-0001-step-000000012".into(),
        "checkpoints".into(),
        "checkpoints/.tmp-epoch-0001-step-000000012-77".into(),
        "".into(),
    ] {
        let latest = run.join(LATEST_FILE);
        std::fs::write(
            &latest,
            serde_json::json!({ "checkpoint": pointer }).to_string(),
        )
        .unwrap();
        let err = Checkpoint::open(&run).unwrap_err();
        assert!(
            matches!(err, TrainerError::LatestPointer { .. }),
            "{pointer}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&*latest.to_string_lossy())
                && msg.contains("not a checkpoint of this run"),
            "{msg}"
        );
    }
}

/// A partial epoch at or past the end of the epoch: resuming would skip
/// the whole epoch untrained. Refused once the dataset's batches per
/// epoch are known.
#[test]
fn a_partial_epoch_past_the_end_of_the_epoch_is_refused_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 8, 2);
    let run = tmp.path().join("run");
    let mut cfg = common::tiny_config(&data, &run);
    cfg.epochs = 1;
    train(&cfg, &AtomicBool::new(false)).unwrap();
    let ck = Checkpoint::open(&run).unwrap();
    let state_path = ck.dir.join(STATE_FILE);
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["epochs_done"] = serde_json::json!(0);
    state["step"] = serde_json::json!(1000);
    state["partial"] = serde_json::json!({
        "batches_done": 1000,
        "counter": {"images": 0, "top1_correct": 0, "top5_correct": 0, "loss_sum": 0.0},
        "train_seconds": 1.0,
        "wait_seconds": 0.0,
    });
    std::fs::write(&state_path, state.to_string()).unwrap();
    cfg.resume = true;
    cfg.epochs = 2;
    let err = train(&cfg, &AtomicBool::new(false)).unwrap_err();
    assert!(
        matches!(
            err,
            TrainerError::CheckpointState {
                source: StateError::PartialPastEpoch {
                    batches_done: 1000,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&*state_path.to_string_lossy()));
}
