//! Converting in parts (`--part I/N`): the parts together, whatever their
//! order or however they overlap in time, give the shards, labels, names,
//! skipped inputs, statistics and manifest of one run; the part that
//! completes last finishes the dataset; a finish with parts missing is
//! refused naming them; a part run again resumes; a changed number of parts
//! is refused.

mod pipeline_support;

use std::path::Path;

use pipeline_support::*;
use preprocess::PartRecord;
use preprocess::{finish, run, NoProgress, Part, PreprocessConfig, PreprocessError};
use shards::{DatasetDir, PartFile};
use synth::{generate, SynthConfig, SynthDataset};

fn dataset(dir: &Path) -> SynthDataset {
    let cfg = SynthConfig {
        classes: 3,
        train_per_class: 9,
        val_images: 10,
        min_side: 48,
        max_side: 120,
        seed: 5,
        // Grayscale, CMYK, PNG-named, empty, truncated, text...: some are
        // skipped, in every part as in one run.
        plant_odd_files: true,
        ..SynthConfig::default()
    };
    generate(dir, &cfg).unwrap()
}

fn config(out: &Path, data: &SynthDataset, part: Option<Part>) -> PreprocessConfig {
    let mut cfg = PreprocessConfig::new(out);
    cfg.train_tar = Some(data.train_tar.clone());
    cfg.val_tar = Some(data.val_tar.clone());
    cfg.devkit = Some(data.devkit.clone());
    cfg.images_per_shard = 3;
    cfg.open_shards = 2;
    cfg.workers = 2;
    cfg.part = part;
    cfg
}

fn part(index: u32, count: u32) -> Part {
    Part { index, count }
}

fn shard_ids(out: &Path, split: &str) -> Vec<u64> {
    shards::list_shards(&out.join(split))
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn parts_in_any_order_equal_one_run_and_the_last_finishes_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"));
    let one = tmp.path().join("one");
    let whole = run(&config(&one, &data, None), &NoProgress).unwrap();
    assert!(whole.skipped() > 0, "bad files are planted");
    for sp in ["train", "val"] {
        assert!(shard_ids(&one, sp).len() >= 4, "every part has shards");
    }

    let out = tmp.path().join("parts");
    let order = [2u32, 0, 1];
    for (k, &i) in order.iter().enumerate() {
        let s = run(&config(&out, &data, Some(part(i, 3))), &NoProgress).unwrap();
        let p = s.part.as_ref().expect("a part run reports its part");
        assert_eq!(p.part, part(i, 3));
        assert!(s.stats.is_none());
        // Only this part's shards, and those of the parts before it, exist.
        for sp in ["train", "val"] {
            for id in shard_ids(&out, sp) {
                assert!(order[..=k].contains(&((id % 3) as u32)), "{sp} shard {id}");
            }
        }
        if k < order.len() - 1 {
            let waiting: Vec<Part> = p.waiting_for.iter().map(|m| m.part).collect();
            let mut rest: Vec<Part> = order[k + 1..].iter().map(|&j| part(j, 3)).collect();
            rest.sort();
            assert_eq!(waiting, rest);
            assert!(p.finished.is_none());
            for file in ["manifest.json", "stats.h5", "classes.tsv"] {
                assert!(!out.join(file).exists(), "{file} before the last part");
            }
            assert!(!out.join("train/skipped.tsv").exists());
        } else {
            assert!(p.waiting_for.is_empty());
            let f = p.finished.as_ref().expect("the last part finishes");
            assert_eq!(f.parts, 3);
            assert_eq!(f.stats, whole.stats, "statistics of the whole");
            let images: u64 = f.splits.iter().map(|s| s.images).sum();
            assert_eq!(images, whole.images());
        }
        for kind in [PartFile::Started, PartFile::Done] {
            assert!(DatasetDir::new(&out).part_file(i, 3, kind).is_file());
        }
    }
    assert_same_output(&one, &out);

    // Each part's record lists its own shards, and the skipped inputs of all
    // parts together are those of one run.
    let mut skipped_by_parts = Vec::new();
    for i in 0..3 {
        let r = PartRecord::read(&out, part(i, 3)).unwrap();
        assert_eq!((r.part, r.parts), (i, 3));
        for (sp, s) in &r.splits {
            for shard in &s.manifest.shards {
                let name = shard.file.strip_prefix(&format!("{sp}/")).unwrap();
                let id = shards::parse_shard_file_name(name).unwrap();
                assert_eq!(id % 3, i as u64, "{}", shard.file);
            }
            // skipped.tsv holds them with tabs and line breaks as spaces.
            let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
            skipped_by_parts.extend(s.skipped_inputs.iter().map(|(n, r)| (clean(n), clean(r))));
        }
    }
    let mut skipped_by_one: Vec<(String, String)> = ["train", "val"]
        .iter()
        .flat_map(|sp| {
            std::fs::read_to_string(one.join(sp).join("skipped.tsv"))
                .unwrap()
                .lines()
                .map(|l| {
                    let (n, r) = l.split_once('\t').unwrap();
                    (n.to_string(), r.to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    skipped_by_parts.sort();
    skipped_by_one.sort();
    assert_eq!(skipped_by_parts, skipped_by_one);
    assert_eq!(skipped_by_one.len() as u64, whole.skipped());

    // An explicit finish again writes the same dataset.
    let f = finish(&out).unwrap();
    assert_eq!(f.stats, whole.stats);
    assert_same_output(&one, &out);
}

#[test]
fn parts_running_at_the_same_time_equal_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"));
    let one = tmp.path().join("one");
    run(&config(&one, &data, None), &NoProgress).unwrap();

    // Three parts start together on an OUT that does not exist yet.
    let out = tmp.path().join("parts");
    let summaries: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let mut cfg = config(&out, &data, Some(part(i, 3)));
                cfg.workers = 1;
                scope.spawn(move || run(&cfg, &NoProgress))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut finished = 0;
    for s in summaries {
        let s = s.unwrap();
        finished += s.part.unwrap().finished.is_some() as usize;
    }
    assert!(finished >= 1, "the last part to complete finishes");
    assert_same_output(&one, &out);
    let left: Vec<String> = files_in(&out)
        .into_iter()
        .chain(files_in(&out.join("parts")))
        .filter(|f| f.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn stopped_part_resumes_beside_the_others_and_missing_parts_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"));
    // Four shards open at a time: part 0 of 3 owns two of each group of four
    // (0 and 3, 4 and 7, ...), so stopping it leaves one half-written.
    let config = |out: &Path, p: Option<Part>| {
        let mut cfg = config(out, &data, p);
        cfg.images_per_shard = 2;
        cfg.open_shards = 4;
        cfg
    };
    let one = tmp.path().join("one");
    run(&config(&one, None), &NoProgress).unwrap();

    let out = tmp.path().join("parts");
    let err = finish(&out).unwrap_err();
    assert!(matches!(err, PreprocessError::NoParts { .. }), "{err}");

    let mut stopped = config(&out, Some(part(0, 3)));
    stopped.halt_after_shards = Some(1);
    let err = run(&stopped, &NoProgress).unwrap_err();
    assert!(matches!(err, PreprocessError::Interrupted), "{err}");
    let tmp_files = |out: &Path| -> Vec<String> {
        files_in(&out.join("train"))
            .into_iter()
            .filter(|f| f.ends_with(".tmp"))
            .collect()
    };
    let left = tmp_files(&out);
    assert!(!left.is_empty(), "part 0 left a half-written shard");

    // Part 1 runs meanwhile and leaves part 0's temporary files alone.
    run(&config(&out, Some(part(1, 3))), &NoProgress).unwrap();
    assert_eq!(tmp_files(&out), left);

    // Finishing now is refused, naming both parts and what became of them.
    let err = finish(&out).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, PreprocessError::PartsMissing { missing, .. } if missing.len() == 2),
        "{msg}"
    );
    assert!(
        msg.contains("0/3 (started, not complete: part-00000-of-00003.done)")
            && msg.contains("2/3 (not started: part-00002-of-00003.done)"),
        "{msg}"
    );
    assert!(!out.join("manifest.json").exists());

    // Another number of parts on the same OUT is refused, naming the one in use.
    let err = run(&config(&out, Some(part(1, 4))), &NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, PreprocessError::PartCountMismatch { count: 3, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("in 3 parts") && msg.contains("--part I/3"),
        "{msg}"
    );
    assert!(!files_in(&out.join("parts"))
        .iter()
        .any(|f| f.contains("-of-00004")));

    // Part 2 completes, then part 0 run again resumes: its complete shard is
    // kept, and it finishes the dataset.
    let s = run(&config(&out, Some(part(2, 3))), &NoProgress).unwrap();
    let waiting: Vec<Part> = s.part.unwrap().waiting_for.iter().map(|m| m.part).collect();
    assert_eq!(waiting, [part(0, 3)]);
    let s = run(&config(&out, Some(part(0, 3))), &NoProgress).unwrap();
    let share = s.images();
    assert!(
        s.written_this_run() < share && s.written_this_run() > 0,
        "resumed: {} of {share} images written again",
        s.written_this_run()
    );
    assert!(s.part.unwrap().finished.is_some());
    assert!(tmp_files(&out).is_empty());
    assert_same_output(&one, &out);
}

#[test]
fn finish_refuses_parts_that_converted_different_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"));
    let out = tmp.path().join("parts");
    run(&config(&out, &data, Some(part(0, 2))), &NoProgress).unwrap();
    let mut train_only = config(&out, &data, Some(part(1, 2)));
    train_only.val_tar = None;
    let err = run(&train_only, &NoProgress).unwrap_err();
    assert!(
        matches!(err, PreprocessError::PartsDisagree { what: "splits", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("part 1/2"), "{err}");
    // Run again with the same inputs as the others, it resumes and finishes.
    let s = run(&config(&out, &data, Some(part(1, 2))), &NoProgress).unwrap();
    assert!(s.part.unwrap().finished.is_some());
    assert!(out.join("manifest.json").is_file());
}

/// Found by fuzzing (`dataset`, a part's record and `classes.tsv` handed to
/// `finish`): a record whose classes are not numbered in order, beside a
/// `classes.tsv` of the same WNIDs, made `finish` panic when it wrote the
/// table ("class entries must be numbered in order"). A record is checked
/// when it is read, and one that does not describe its part is refused
/// naming the file.
#[test]
fn finish_refuses_a_part_record_that_does_not_describe_its_part() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"));
    let out = tmp.path().join("parts");
    run(&config(&out, &data, Some(part(0, 1))), &NoProgress).unwrap();
    let record = DatasetDir::new(&out).part_file(0, 1, PartFile::Done);
    let good = std::fs::read_to_string(&record).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 5] = [
        ("class n", |r| {
            r["classes"][1]["index"] = serde_json::json!(7)
        }),
        ("which classes.tsv cannot hold", |r| {
            r["classes"][0]["wnid"] = serde_json::json!("n01\tx")
        }),
        ("lists no classes", |r| r["classes"] = serde_json::json!([])),
        ("records part 1 of 2", |r| {
            r["part"] = serde_json::json!(1);
            r["parts"] = serde_json::json!(2)
        }),
        ("format version 1", |r| {
            r["format_version"] = serde_json::json!(1)
        }),
    ];
    for (expected, edit) in edits {
        let mut json: serde_json::Value = serde_json::from_str(&good).unwrap();
        edit(&mut json);
        std::fs::write(&record, json.to_string()).unwrap();
        let err = finish(&out).unwrap_err();
        assert!(
            matches!(err, PreprocessError::PartRecord { .. }),
            "{expected}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&*record.to_string_lossy()) && msg.contains(expected),
            "{expected}: {msg}"
        );
    }
    std::fs::write(&record, good).unwrap();
    finish(&out).unwrap();
}
