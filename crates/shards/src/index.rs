//! The open-time index: everything [`open_shard_indexed`](crate::open_shard_indexed)
//! needs from a shard (encoding, image shape, labels and where each image
//! lies), written into the shard's HDF5 user block when the shard is
//! finished, so that opening a shard is one file open and one positioned
//! read, with no HDF5 call.
//!
//! HDF5 reserves a user block at the start of a file for the application
//! and never reads it; h5py and the HDF5 tools open such files as usual.
//! Layout (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `ALXIDX\0` followed by the version byte `1` |
//! | 4 | `u32` length `L` of the index, CRC included |
//! | 4 | `u32` encoding: 0 raw, 1 JPEG |
//! | 4 + 4 | `u32` image height, width |
//! | 8 | `u64` images `n` |
//! | 8 | `u64` JPEG: file offset of the `jpeg` dataset (0 for raw) |
//! | 8 x n (raw) or 8 x (n + 1) (JPEG) | `u64` raw: file offset of each image; JPEG: `jpeg_offsets` |
//! | 4 x n | `u32` labels |
//! | 4 | CRC-32 of everything before it |
//!
//! A shard without this index (written before it existed, by another tool,
//! or with more images than its user block has room for) is opened through
//! HDF5 instead. Shards are immutable once finished: a tool that rewrites a
//! shard's labels or images in place must also rewrite the index (or zero
//! its magic).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::ShardError;

const MAGIC: [u8; 7] = *b"ALXIDX\0";
const VERSION: u8 = 1;
const HEADER: usize = 40;
const CRC: usize = 4;
/// HDF5's smallest user block.
const MIN_BLOCK: u64 = 512;
/// Bytes read by the first positioned read of an open: room for the index
/// of a shard of up to 1,360 images (the default shard holds 1,024).
const FIRST_READ: usize = 16 << 10;

/// How a shard's images are stored, as its index records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IndexedImages {
    /// Raw pixels: the file offset of each image.
    Raw { offsets: Vec<u64> },
    /// JPEG streams: image `i` is `base + offsets[i] .. base + offsets[i+1]`.
    Jpeg { base: u64, offsets: Vec<u64> },
}

/// What a shard's index records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardIndex {
    pub height: u32,
    pub width: u32,
    pub labels: Vec<u32>,
    pub images: IndexedImages,
}

impl ShardIndex {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn offsets(&self) -> &[u64] {
        match &self.images {
            IndexedImages::Raw { offsets } | IndexedImages::Jpeg { offsets, .. } => offsets,
        }
    }

    /// Bytes of the encoded index.
    pub(crate) fn encoded_len(&self) -> usize {
        HEADER + 8 * self.offsets().len() + 4 * self.len() + CRC
    }

    /// The index as it is stored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.encoded_len() as u32).to_le_bytes());
        let (encoding, base) = match &self.images {
            IndexedImages::Raw { .. } => (0u32, 0u64),
            IndexedImages::Jpeg { base, .. } => (1, *base),
        };
        out.extend_from_slice(&encoding.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        out.extend_from_slice(&base.to_le_bytes());
        for o in self.offsets() {
            out.extend_from_slice(&o.to_le_bytes());
        }
        for l in &self.labels {
            out.extend_from_slice(&l.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the index at the start of `file`: `Ok(None)` when the file has
    /// none (no magic), an error naming `path` when it has a damaged one.
    pub(crate) fn read(path: &Path, file: &File) -> Result<Option<ShardIndex>, ShardError> {
        let mut buf = vec![0u8; FIRST_READ];
        let got = read_up_to(file, &mut buf, 0)
            .map_err(|e| ShardError::io(path, "reading the shard index", e))?;
        buf.truncate(got);
        if buf.len() < HEADER || buf[..7] != MAGIC {
            return Ok(None);
        }
        let bad = |what: String| ShardError::format(path, format!("shard index: {what}"));
        if buf[7] != VERSION {
            return Err(bad(format!(
                "version {} (this build reads version {VERSION})",
                buf[7]
            )));
        }
        let len = u32_at(&buf, 8) as usize;
        if len < HEADER + CRC {
            return Err(bad(format!("length {len} is too short")));
        }
        if len > buf.len() {
            // The length is read from the file: check it against the file
            // before allocating for it.
            let file_len = file
                .metadata()
                .map_err(|e| ShardError::io(path, "reading the shard index", e))?
                .len();
            if len as u64 > file_len {
                return Err(bad(format!(
                    "length {len} runs past the end of the file ({file_len} bytes)"
                )));
            }
            buf.resize(len, 0);
            file.read_exact_at(&mut buf[got..], got as u64)
                .map_err(|e| ShardError::io(path, "reading the shard index", e))?;
        }
        let body = &buf[..len - CRC];
        let stored_crc = u32_at(&buf, len - CRC);
        if crc32fast::hash(body) != stored_crc {
            return Err(bad("checksum mismatch (damaged file)".into()));
        }
        let encoding = u32_at(body, 12);
        let (height, width) = (u32_at(body, 16), u32_at(body, 20));
        let n = u64_at(body, 24);
        // Each image takes at least 12 bytes of the index: a larger count
        // cannot fit (and would overflow the sum below).
        if n > (len / 12) as u64 {
            return Err(bad(format!("{n} images do not fit its length {len}")));
        }
        let n = n as usize;
        let base = u64_at(body, 32);
        let n_offsets = match encoding {
            0 => n,
            1 => n + 1,
            other => return Err(bad(format!("unknown encoding {other}"))),
        };
        if HEADER + 8 * n_offsets + 4 * n + CRC != len {
            return Err(bad(format!("{n} images do not fit its length {len}")));
        }
        let offsets: Vec<u64> = (0..n_offsets)
            .map(|i| u64_at(body, HEADER + 8 * i))
            .collect();
        let at = HEADER + 8 * n_offsets;
        let labels = (0..n).map(|i| u32_at(body, at + 4 * i)).collect();
        let images = match encoding {
            0 => IndexedImages::Raw { offsets },
            _ => IndexedImages::Jpeg { base, offsets },
        };
        Ok(Some(ShardIndex {
            height,
            width,
            labels,
            images,
        }))
    }
}

/// Removes the open-time index of the shard at `path` (zeroes its magic), so
/// that readers open it through HDF5: for tools that change a finished
/// shard's labels or images in place. A file without an index is left as it
/// is.
pub fn clear_index(path: &Path) -> Result<(), ShardError> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ShardError::io(path, "opening to clear the shard index", e))?;
    let mut head = [0u8; 8];
    let got = read_up_to(&file, &mut head, 0)
        .map_err(|e| ShardError::io(path, "reading the shard index", e))?;
    if got == head.len() && head[..7] == MAGIC {
        file.write_all_at(&[0u8; 8], 0)
            .map_err(|e| ShardError::io(path, "clearing the shard index", e))?;
    }
    Ok(())
}

/// The user block to reserve for a shard of up to `capacity` images: the
/// smallest power of two (at least HDF5's 512 bytes) that holds the index of
/// that many JPEG images (the larger of the two encodings' indexes).
pub(crate) fn user_block_size(capacity: usize) -> u64 {
    let bytes = (HEADER + 8 * (capacity + 1) + 4 * capacity + CRC) as u64;
    bytes.next_power_of_two().max(MIN_BLOCK)
}

/// Reads from `at` until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(jpeg: bool, n: usize) -> ShardIndex {
        let labels: Vec<u32> = (0..n as u32).map(|i| i * 7 % 1000).collect();
        let images = if jpeg {
            IndexedImages::Jpeg {
                base: 4096,
                offsets: (0..=n as u64).map(|i| i * 1000 + i * i).collect(),
            }
        } else {
            IndexedImages::Raw {
                offsets: (0..n as u64).map(|i| 2048 + i * 196_608).collect(),
            }
        };
        ShardIndex {
            height: 256,
            width: 256,
            labels,
            images,
        }
    }

    fn round_trip(bytes: &[u8]) -> Result<Option<ShardIndex>, ShardError> {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        ShardIndex::read(Path::new("shard-00000.h5"), &f)
    }

    #[test]
    fn encodes_and_reads_back_both_encodings_and_long_indexes() {
        for jpeg in [false, true] {
            // 2,000 images: longer than the first read.
            for n in [0, 1, 1024, 2000] {
                let index = sample(jpeg, n);
                let mut bytes = index.encode();
                assert_eq!(bytes.len(), index.encoded_len());
                bytes.resize(bytes.len() + 100, 0xAB);
                assert_eq!(
                    round_trip(&bytes).unwrap(),
                    Some(index),
                    "jpeg {jpeg}, n {n}"
                );
            }
        }
    }

    #[test]
    fn the_block_holds_the_index_of_its_capacity() {
        assert_eq!(user_block_size(0), 512);
        assert_eq!(user_block_size(1024), 16384);
        // 679: its JPEG index is 8,200 bytes, 8 past a power of two.
        for cap in [0, 1, 7, 100, 679, 1024, 1360, 1361, 5000] {
            let size = user_block_size(cap);
            assert!(size.is_power_of_two() && size >= 512);
            for jpeg in [false, true] {
                assert!(
                    sample(jpeg, cap).encoded_len() as u64 <= size,
                    "capacity {cap}"
                );
            }
        }
        assert!(sample(true, 1360).encoded_len() <= FIRST_READ);
    }

    #[test]
    fn a_file_without_the_magic_has_no_index() {
        assert_eq!(
            round_trip(b"\x89HDF\r\n\x1a\n rest of a file").unwrap(),
            None
        );
        assert_eq!(round_trip(&[0u8; 600]).unwrap(), None);
        assert_eq!(round_trip(b"").unwrap(), None);
    }

    #[test]
    fn clearing_removes_an_index_and_leaves_other_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("with.h5");
        let mut bytes = sample(false, 3).encode();
        bytes.extend_from_slice(b"rest");
        std::fs::write(&with, &bytes).unwrap();
        clear_index(&with).unwrap();
        let after = std::fs::read(&with).unwrap();
        assert_eq!(after[..8], [0; 8]);
        assert_eq!(after[8..], bytes[8..]);
        let f = File::open(&with).unwrap();
        assert_eq!(ShardIndex::read(&with, &f).unwrap(), None);

        let without = dir.path().join("without.h5");
        let hdf5_head = b"\x89HDF\r\n\x1a\n and the rest of a file".to_vec();
        std::fs::write(&without, &hdf5_head).unwrap();
        clear_index(&without).unwrap();
        assert_eq!(std::fs::read(&without).unwrap(), hdf5_head);
    }

    #[test]
    fn an_unreadable_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // Opening a directory works on Linux; reading it fails (EISDIR).
        let f = File::open(dir.path()).unwrap();
        let err = ShardIndex::read(dir.path(), &f).unwrap_err().to_string();
        assert!(err.contains("reading the shard index"), "{err}");
    }

    /// Found by fuzzing: a length field of 1.8 GB in a 600-byte file made
    /// the reader allocate (and zero) that much before reading failed.
    #[test]
    fn an_index_longer_than_the_file_is_refused_before_allocating() {
        for len in [1_819_017_528u32, u32::MAX, FIRST_READ as u32 + 1] {
            let mut b = sample(false, 3).encode();
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b.resize(600, 0);
            let err = round_trip(&b).unwrap_err().to_string();
            assert!(
                err.contains("shard-00000.h5")
                    && err.contains(&format!(
                        "length {len} runs past the end of the file (600 bytes)"
                    )),
                "{err}"
            );
        }
    }

    /// Found by fuzzing: an image count near 2^62 under a valid CRC
    /// overflowed the length check (a panic with overflow checks; with
    /// wrapping arithmetic, counts such as 2^62 + 3 passed it and the
    /// reader tried to collect 2^62 offsets).
    #[test]
    fn an_image_count_past_the_length_is_refused_without_overflow() {
        let good = sample(false, 3).encode();
        for n in [u64::MAX, 1 << 62, (1 << 62) + 3, (1 << 61) + 3, 4] {
            let mut b = good.clone();
            b[24..32].copy_from_slice(&n.to_le_bytes());
            let len = b.len();
            let crc = crc32fast::hash(&b[..len - 4]);
            b[len - 4..].copy_from_slice(&crc.to_le_bytes());
            let err = round_trip(&b).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{n} images do not fit its length {len}")),
                "{err}"
            );
        }
    }

    #[test]
    fn damage_is_reported_with_the_file_name() {
        let good = sample(true, 10).encode();
        let with_len = |len: u32| {
            let mut b = good.clone();
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (with_len(10), "too short"),
            (with_len(43), "too short"),
            (good[..HEADER].to_vec(), "past the end of the file"),
            (
                {
                    let mut b = good.clone();
                    b[60] ^= 1;
                    b
                },
                "checksum mismatch",
            ),
            (
                {
                    let mut b = good.clone();
                    b[7] = 9;
                    b
                },
                "version 9",
            ),
            (good[..good.len() - 1].to_vec(), "past the end of the file"),
        ];
        for (bytes, want) in cases {
            let err = round_trip(&bytes).unwrap_err().to_string();
            assert!(
                err.contains("shard-00000.h5") && err.contains(want),
                "{err}"
            );
        }
        // A consistent CRC over an inconsistent length.
        let mut b = sample(false, 10).encode();
        b.truncate(b.len() - 4 - 4);
        let len = b.len() + 4;
        b[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let err = round_trip(&b).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }
}
