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
