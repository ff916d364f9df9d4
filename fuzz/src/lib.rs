//! What the fuzz targets share: an allocator that turns an oversized
//! allocation into a crash, the structure-aware input formats (so that the
//! fuzzer's mutations reach the fields behind checksums and compression),
//! and a scratch file for the parsers that read from a path.
//!
//! Each target's input starts with one mode byte; the seed generator
//! (`src/bin/seeds.rs`) writes seeds of every mode from the project's own
//! writers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::PathBuf;

/// The largest single allocation a parser may make for a fuzz input (a few
/// hundred kilobytes at most): anything larger is a finding.
pub const MAX_ALLOCATION: usize = 64 << 20;

/// The system allocator, aborting (a crash libFuzzer records, with the input
/// that caused it) on any allocation over [`MAX_ALLOCATION`]. libFuzzer's own
/// `-malloc_limit_mb` needs a sanitizer's allocator hooks, which a stable
/// toolchain does not build.
pub struct BoundedAlloc;

unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // No allocation here: write the message straight to stderr.
        let mut msg = [0u8; 96];
        let mut w = &mut msg[..];
        let _ = writeln!(w, "allocation of {size} bytes (bound {MAX_ALLOCATION})");
        let used = 96 - w.len();
        let _ = std::io::stderr().write_all(&msg[..used]);
        std::process::abort();
    }
}

#[global_allocator]
static ALLOC: BoundedAlloc = BoundedAlloc;

/// A file of this process for the parsers that take a path (one per
/// target and process, so parallel fuzzing jobs do not share it).
pub fn scratch_path(name: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("alexnet-fuzz-{}-{name}", std::process::id()))
}

/// Writes `bytes` to the scratch file `name` and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_path(name);
    std::fs::write(&path, bytes).expect("the scratch file can be written");
    path
}

/// Size of a tar header block.
const BLOCK: usize = 512;

/// The size a tar header records (octal, or GNU base-256), as tar readers
/// parse it; `None` when it is not a number.
fn header_size(h: &[u8]) -> Option<u64> {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        let mut v: u64 = 0;
        for &b in &field[4..] {
            v = v.checked_shl(8)? | b as u64;
        }
        return Some(v);
    }
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Writes the right checksum into the tar header at `h` (512 bytes).
fn set_checksum(h: &mut [u8]) {
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
}

/// Repairs the checksum of every header of the tar in `bytes`, walking it
/// as a reader would (header, data rounded up to 512 bytes, next header),
/// and, with `nested`, of the tars held by members named `*.tar` too. The
/// fuzzer then mutates the fields behind the checksum, not the checksum.
pub fn fix_tar_checksums(bytes: &mut [u8], nested: bool) {
    let mut at = 0usize;
    while bytes.len().saturating_sub(at) >= BLOCK {
        let h = &bytes[at..at + BLOCK];
        if h.iter().all(|&b| b == 0) {
            at += BLOCK;
            continue;
        }
        let Some(size) = header_size(h) else { return };
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let is_tar = h[..name_end].ends_with(b".tar");
        set_checksum(&mut bytes[at..at + BLOCK]);
        let data = at + BLOCK;
        let Some(end) = usize::try_from(size).ok().and_then(|s| data.checked_add(s)) else {
            return;
        };
        if nested && is_tar {
            let end = end.min(bytes.len());
            fix_tar_checksums(&mut bytes[data..end], false);
        }
        let Some(next) = end.checked_add(BLOCK - 1) else {
            return;
        };
        at = next / BLOCK * BLOCK;
    }
}

/// Gzips `bytes` (fast level: the fuzzer wants many executions).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// zlib-compresses `bytes`.
pub fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).expect("writing to memory");
    z.finish().expect("writing to memory")
}

/// Splits `data` into two parts at a little-endian `u16` length prefix:
/// `[len][first: len bytes][second: the rest]` (a short first part when the
/// data ends early).
pub fn split_two(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let n = n.min(rest.len());
    rest.split_at(n)
}

/// The inverse of [`split_two`], for the seeds (`first` at most 65,535 bytes).
pub fn join_two(first: &[u8], second: &[u8]) -> Vec<u8> {
    let n = u16::try_from(first.len()).expect("the first part fits a u16 length");
    let mut out = n.to_le_bytes().to_vec();
    out.extend_from_slice(first);
    out.extend_from_slice(second);
    out
}

/// The 128-byte header of a little-endian level 5 MAT-file.
pub fn mat_header() -> Vec<u8> {
    let mut h = vec![b' '; 116];
    let text = b"MATLAB 5.0 MAT-file, fuzz";
    h[..text.len()].copy_from_slice(text);
    h.extend_from_slice(&[0u8; 8]);
    h.extend_from_slice(&0x0100u16.to_le_bytes());
    h.extend_from_slice(b"IM");
    h
}

/// A MAT-file whose one element is `miCOMPRESSED` holding `inflated`.
pub fn mat_with_compressed(inflated: &[u8]) -> Vec<u8> {
    let z = zlib(inflated);
    let mut out = mat_header();
    out.extend_from_slice(&15u32.to_le_bytes());
    out.extend_from_slice(&(z.len() as u32).to_le_bytes());
    out.extend_from_slice(&z);
    out
}

/// A tar.gz with the devkit's two members under a top directory (the
/// layout of `ILSVRC2012_devkit_t12.tar.gz`).
pub fn devkit_tar(meta: &[u8], ground_truth: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let top = "ILSVRC2012_devkit_t12/data";
    for (name, data) in [
        (format!("{top}/meta.mat"), meta),
        (
            format!("{top}/ILSVRC2012_validation_ground_truth.txt"),
            ground_truth,
        ),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data)
            .expect("writing to memory");
    }
    b.into_inner().expect("writing to memory")
}

/// The magic that starts a shard's open-time index.
const INDEX_MAGIC: &[u8; 7] = b"ALXIDX\0";

/// Repairs the CRC-32 of a shard's open-time index (its last 4 bytes, over
/// the bytes before them), when `bytes` starts with one whose length fits.
pub fn fix_index_crc(bytes: &mut [u8]) {
    if bytes.len() < 12 || &bytes[..7] != INDEX_MAGIC {
        return;
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if len < 12 || len > bytes.len() {
        return;
    }
    let crc = crc32fast::hash(&bytes[..len - 4]);
    bytes[len - 4..len].copy_from_slice(&crc.to_le_bytes());
}

/// A fresh, empty directory of this process for the targets that write
/// several files (one per target and process).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = scratch_path(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("the scratch directory can be removed");
    }
    std::fs::create_dir_all(&dir).expect("the scratch directory can be made");
    dir
}

/// Splits `data` into `n` parts at little-endian `u16` length prefixes (see
/// [`split_two`]); the last part is the rest.
pub fn split_n(mut data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    for _ in 1..n {
        let (first, rest) = split_two(data);
        parts.push(first);
        data = rest;
    }
    parts.push(data);
    parts
}

/// The inverse of [`split_n`], for the seeds.
pub fn join_n(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            out.extend_from_slice(p);
        } else {
            out.extend_from_slice(&join_two(p, &[]));
        }
    }
    out
}

/// The lines of `bytes` as file names a directory can hold (at most
/// `max`; `/` and NUL replaced, empty names and `.`/`..` left out, each at
/// most 200 bytes).
pub fn file_names(bytes: &[u8], max: usize) -> Vec<String> {
    names(bytes, max, true)
}

/// The lines of `bytes` as member paths of an archive (as
/// [`file_names`], `/` kept).
pub fn file_names_with_slashes(bytes: &[u8], max: usize) -> Vec<String> {
    names(bytes, max, false)
}

fn names(bytes: &[u8], max: usize, no_slash: bool) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| {
            let mut n: String = l
                .chars()
                .map(|c| {
                    if (no_slash && c == '/') || c == '\0' {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            while n.len() > 200 {
                n.pop();
            }
            n
        })
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .take(max)
        .collect()
}

/// A zip of `members` (`(name, bytes)`), stored or deflated.
pub fn zip_of(members: &[(String, Vec<u8>)], deflate: bool) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = SimpleFileOptions::default()
        .compression_method(method)
        .last_modified_time(zip::DateTime::default());
    for (name, data) in members {
        // Names the writer refuses (duplicates) are left out.
        if w.start_file(name.as_str(), opts).is_ok() {
            w.write_all(data).expect("writing to memory");
        }
    }
    w.finish().expect("writing to memory").into_inner()
}

/// Finds the layout `from` holds and reads each of its splits as the
/// pipeline does ([`preprocess::scan_layout`]); any error must name `dir`
/// (which holds every file given), except those about the set of paths
/// given as a whole (two layouts, a part missing), which name the layout.
/// Returns the members read.
pub fn check_layout(from: &[PathBuf], dir: &std::path::Path) -> Vec<preprocess::TarMember> {
    let names_dir = |text: String| {
        assert!(text.contains(&*dir.to_string_lossy()), "{text}");
    };
    let layout = match preprocess::detect_layout(from) {
        Ok(layout) => layout,
        Err(e @ preprocess::LayoutError::Ambiguous(_)) => {
            assert!(e.to_string().contains("ambiguous"), "{e}");
            return Vec::new();
        }
        Err(e @ preprocess::LayoutError::Incomplete { .. }) => {
            assert!(e.to_string().contains("incomplete"), "{e}");
            return Vec::new();
        }
        Err(e) => {
            names_dir(e.to_string());
            return Vec::new();
        }
    };
    let mut all = Vec::new();
    for split in [preprocess::Split::Train, preprocess::Split::Val] {
        match preprocess::scan_layout(&layout, split) {
            Ok(members) => all.extend(members),
            Err(e) => names_dir(e.to_string()),
        }
    }
    all
}

/// The input of the `dataset` target's runs: a train directory of one
/// class holding one 16x16 JPEG, written once into `root/train`.
pub fn tiny_train_dir(root: &std::path::Path) -> PathBuf {
    let train = root.join("train");
    let class = train.join("n00000001");
    if !class.join("a.JPEG").is_file() {
        std::fs::create_dir_all(&class).expect("the scratch directory can be made");
        let pixels: Vec<u8> = (0..16 * 16 * 3).map(|i| (i * 7) as u8).collect();
        let mut jpeg = Vec::new();
        shards::encode_jpeg(&pixels, 16, 16, 90, &mut jpeg).expect("encoding to memory");
        std::fs::write(class.join("a.JPEG"), jpeg).expect("the scratch file can be written");
    }
    train
}

/// The options of the `dataset` target's runs (and of its seeds): `train`
/// into `out`, one worker, optionally as part `part` of `count`.
pub fn tiny_run_config(
    train: &std::path::Path,
    out: &std::path::Path,
    part: Option<(u32, u32)>,
) -> preprocess::PreprocessConfig {
    let mut cfg = preprocess::PreprocessConfig::new(out);
    cfg.train_dir = Some(train.to_path_buf());
    cfg.images_per_shard = 4;
    cfg.open_shards = 1;
    cfg.workers = 1;
    cfg.part = part.map(|(index, count)| preprocess::Part { index, count });
    cfg
}

/// The name of the checkpoint the `checkpoint` target's run directory
/// points at.
pub const CHECKPOINT_NAME: &str = "epoch-0001-step-000000012";

/// A state a run resumes from: one epoch of three done, an epoch in
/// progress (with `partial`), one epoch's metrics.
pub fn checkpoint_state(partial: bool) -> trainer::CheckpointState {
    use trainer::checkpoint::{PartialEpoch, FORMAT_VERSION};
    let mut schedule = trainer::LrSchedule::plateau(0.01, 2);
    schedule.end_epoch(1, 61.5);
    trainer::CheckpointState {
        format_version: FORMAT_VERSION,
        architecture: trainer::Architecture::by_name("alexnet-small").expect("a known network"),
        num_classes: 10,
        init: "paper".into(),
        seed: 7,
        batch_size: 8,
        momentum: 0.9,
        weight_decay: 5e-4,
        epochs: 3,
        schedule,
        epochs_done: 1,
        step: 12,
        partial: partial.then_some(PartialEpoch {
            batches_done: 3,
            counter: trainer::TopKCounter {
                images: 24,
                top1_correct: 2,
                top5_correct: 9,
                loss_sum: 55.25,
            },
            train_seconds: 1.5,
            wait_seconds: 0.25,
        }),
        metrics: vec![trainer::EpochMetrics {
            epoch: 1,
            step: 9,
            lr: 0.01,
            train_loss: 2.3,
            train_top1_error: 90.0,
            train_top5_error: 50.0,
            val_loss: 2.29,
            val_top1_error: 61.5,
            val_top5_error: 40.0,
            train_images: 72,
            images_per_sec: 100.0,
            data_wait_share: 0.1,
            train_seconds: 0.72,
            val_seconds: 0.1,
        }],
        data_dir: "/data/imagenet-256".into(),
    }
}
