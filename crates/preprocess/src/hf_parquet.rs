//! Hugging Face `imagenet-1k` as parquet: `train-*.parquet` and
//! `validation-*.parquet`, each row an `image` struct (`bytes`, `path`) and
//! an `int64` `label`, the class's index in the sorted class list.
//!
//! The names and labels are read first (two small columns of every row
//! group); the images then follow in the canonical order, one image column
//! read a page at a time through the row group that holds it, so that no
//! more than a page of images is held, whatever the file's size.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parquet::basic::Type as PhysicalType;
use parquet::column::reader::{get_typed_column_reader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};

use crate::error::PreprocessError;
use crate::hf_tar::strip_wnid_suffix;
use crate::source::{Labeler, MemberBytes, MAX_MEMBER_BYTES};

/// Leaf columns of Hugging Face's schema.
const BYTES: &str = "image.bytes";
const PATH: &str = "image.path";
const LABEL: &str = "label";

/// Rows read at a time from the name and label columns.
const SCAN_BATCH: usize = 4096;

/// A parquet file as the parquet reader reads it, guarded against two of
/// its weaknesses with hostile files: a range past the end of the file is
/// refused before its buffer is allocated (the reader reserves the length
/// the metadata claims), and reading at the end of the file is an error
/// rather than an empty read (the reader skips unknown page-header fields
/// by copying a number of bytes the file claims, which an empty read never
/// ends: a few bytes asking to skip billions of values would spin for
/// minutes).
struct Guarded(File);

impl Length for Guarded {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl ChunkReader for Guarded {
    type T = EndIsAnError<BufReader<File>>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(EndIsAnError(self.0.get_read(start)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let len = self.0.len();
        if start.checked_add(length as u64).is_none_or(|end| end > len) {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "{length} bytes at offset {start} run past the end of the file ({len} bytes)"
            )));
        }
        self.0.get_bytes(start, length)
    }
}

/// A reader that fails with `UnexpectedEof` where the file ends.
struct EndIsAnError<R>(R);

impl<R: Read> Read for EndIsAnError<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        }
        Ok(n)
    }
}

/// One open parquet file and where its columns are.
struct ParquetFile {
    name: String,
    reader: SerializedFileReader<Guarded>,
    bytes: usize,
    path: usize,
    label: usize,
}

/// A row: its place in the canonical order, name, label and position.
struct Row {
    key: (String, String),
    name: String,
    label: Result<i64, String>,
    file: usize,
    group: usize,
    row: usize,
}

fn perr(file: &str) -> impl Fn(parquet::errors::ParquetError) -> PreprocessError + '_ {
    move |source| PreprocessError::Parquet {
        file: file.to_string(),
        source,
    }
}

fn open(path: &PathBuf) -> Result<ParquetFile, PreprocessError> {
    let name = path.display().to_string();
    let f = File::open(path).map_err(|e| PreprocessError::io(path, e))?;
    let reader = guarded(&name, || {
        SerializedFileReader::new(Guarded(f)).map_err(perr(&name))
    })?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let find = |col: &str, ty: PhysicalType| {
        (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == col && schema.column(i).physical_type() == ty)
            .ok_or_else(|| PreprocessError::ParquetSchema {
                file: name.clone(),
                message: format!("no {ty} column `{col}` (Hugging Face's layout has an image struct of bytes and path, and an int64 label)"),
            })
    };
    Ok(ParquetFile {
        bytes: find(BYTES, PhysicalType::BYTE_ARRAY)?,
        path: find(PATH, PhysicalType::BYTE_ARRAY)?,
        label: find(LABEL, PhysicalType::INT64)?,
        name,
        reader,
    })
}

/// Runs `f`, a call into the parquet reader for `file`, turning a panic of
/// the reader (it has some on damaged files: a dictionary-encoded page
/// without its dictionary, say) into [`PreprocessError::ParquetPanic`].
fn guarded<T>(
    file: &str,
    f: impl FnOnce() -> Result<T, PreprocessError>,
) -> Result<T, PreprocessError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        Err(PreprocessError::ParquetPanic {
            file: file.to_string(),
            message,
        })
    })
}

/// The values of one optional leaf column of a row group, `None` for nulls.
fn read_column<T: parquet::data_type::DataType>(
    pf: &ParquetFile,
    group: usize,
    col: usize,
) -> Result<Vec<Option<T::T>>, PreprocessError> {
    guarded(&pf.name, || read_column_unguarded::<T>(pf, group, col))
}

fn read_column_unguarded<T: parquet::data_type::DataType>(
    pf: &ParquetFile,
    group: usize,
    col: usize,
) -> Result<Vec<Option<T::T>>, PreprocessError> {
    let rg = pf.reader.get_row_group(group).map_err(perr(&pf.name))?;
    // The row count as the metadata claims it: reserved up to one batch.
    let rows = usize::try_from(rg.metadata().num_rows()).unwrap_or(0);
    let max_def = rg.metadata().column(col).column_descr().max_def_level();
    let mut reader: ColumnReaderImpl<T> =
        get_typed_column_reader(rg.get_column_reader(col).map_err(perr(&pf.name))?);
    let mut out = Vec::with_capacity(rows.min(SCAN_BATCH));
    let (mut defs, mut values) = (Vec::new(), Vec::new());
    while out.len() < rows {
        defs.clear();
        values.clear();
        let (records, _, _) = reader
            .read_records(SCAN_BATCH, Some(&mut defs), None, &mut values)
            .map_err(perr(&pf.name))?;
        if records == 0 {
            break;
        }
        let mut vals = values.drain(..);
        if max_def == 0 {
            out.extend(vals.map(Some));
        } else {
            for &d in &defs {
                out.push(if d == max_def { vals.next() } else { None });
            }
        }
    }
    Ok(out)
}

/// The rows of every file, in the canonical order.
fn scan(files: &[ParquetFile], labeler: &Labeler<'_>) -> Result<Vec<Row>, PreprocessError> {
    let mut rows = Vec::new();
    for (fi, pf) in files.iter().enumerate() {
        let short = pf.name.rsplit('/').next().unwrap_or_default().to_string();
        let mut row_in_file = 0usize;
        for group in 0..pf.reader.num_row_groups() {
            let paths = read_column::<ByteArrayType>(pf, group, pf.path)?;
            let labels = read_column::<Int64Type>(pf, group, pf.label)?;
            for (row, path) in paths.iter().enumerate() {
                let given = path
                    .as_ref()
                    .and_then(|p| p.as_utf8().ok())
                    .map(|p| p.rsplit(['/', '\\']).next().unwrap_or_default().to_string())
                    .filter(|p| !p.is_empty());
                // A row without a name is named by its file and row.
                let name = match given {
                    Some(p) => strip_wnid_suffix(&p).0,
                    None => format!("{short}:{}", row_in_file + row),
                };
                let label = labeler.index_label(labels.get(row).copied().flatten());
                let wnid = match (&label, labeler.is_train()) {
                    (Ok(l), true) => labeler.class_wnids[*l as usize].clone(),
                    _ => String::new(),
                };
                rows.push(Row {
                    key: (wnid, name.clone()),
                    name,
                    label,
                    file: fi,
                    group,
                    row,
                });
            }
            row_in_file += paths.len();
        }
    }
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(rows)
}

/// Reads images of one row group in increasing row order, a page at a time.
struct ImageCursor {
    at: Option<(usize, usize)>,
    next_row: usize,
    max_def: i16,
    reader: Option<ColumnReaderImpl<ByteArrayType>>,
    defs: Vec<i16>,
    values: Vec<ByteArray>,
}

impl ImageCursor {
    fn read(
        &mut self,
        files: &[ParquetFile],
        r: &Row,
        bytes_read: &AtomicU64,
    ) -> Result<Result<Vec<u8>, String>, PreprocessError> {
        let result = guarded(&files[r.file].name, || {
            self.read_unguarded(files, r, bytes_read)
        });
        if result.is_err() {
            // A reader that failed part-way is not used again.
            self.reader = None;
        }
        result
    }

    fn read_unguarded(
        &mut self,
        files: &[ParquetFile],
        r: &Row,
        bytes_read: &AtomicU64,
    ) -> Result<Result<Vec<u8>, String>, PreprocessError> {
        let pf = &files[r.file];
        if self.at != Some((r.file, r.group)) || r.row < self.next_row || self.reader.is_none() {
            let rg = pf.reader.get_row_group(r.group).map_err(perr(&pf.name))?;
            if self.at != Some((r.file, r.group)) {
                bytes_read.fetch_add(rg.metadata().compressed_size() as u64, Ordering::Relaxed);
            }
            self.max_def = rg
                .metadata()
                .column(pf.bytes)
                .column_descr()
                .max_def_level();
            self.reader = Some(get_typed_column_reader(
                rg.get_column_reader(pf.bytes).map_err(perr(&pf.name))?,
            ));
            self.at = Some((r.file, r.group));
            self.next_row = 0;
        }
        let reader = self.reader.as_mut().expect("opened above");
        if r.row > self.next_row {
            reader
                .skip_records(r.row - self.next_row)
                .map_err(perr(&pf.name))?;
        }
        self.defs.clear();
        self.values.clear();
        reader
            .read_records(1, Some(&mut self.defs), None, &mut self.values)
            .map_err(perr(&pf.name))?;
        self.next_row = r.row + 1;
        let present = self.max_def == 0 || self.defs.first() == Some(&self.max_def);
        Ok(match self.values.pop() {
            Some(v) if present && v.len() as u64 > MAX_MEMBER_BYTES => {
                Err(format!("image too large ({} bytes)", v.len()))
            }
            Some(v) if present => Ok(v.data().to_vec()),
            _ => Err("the row has no image bytes".into()),
        })
    }
}

/// Streams the rows of the parquet files in the canonical order.
pub(crate) fn stream_parquet(
    paths: &[PathBuf],
    labeler: &Labeler<'_>,
    bytes_read: &AtomicU64,
    want: &dyn Fn(u64) -> bool,
    push: &mut dyn FnMut(String, Result<i64, String>, MemberBytes) -> bool,
) -> Result<(), PreprocessError> {
    let files = paths.iter().map(open).collect::<Result<Vec<_>, _>>()?;
    let rows = scan(&files, labeler)?;
    let mut cursor = ImageCursor {
        at: None,
        next_row: 0,
        max_def: 0,
        reader: None,
        defs: Vec::new(),
        values: Vec::new(),
    };
    for (index, r) in rows.into_iter().enumerate() {
        let data = if want(index as u64) {
            Some(cursor.read(&files, &r, bytes_read)?)
        } else {
            None
        };
        if !push(r.name, r.label, data) {
            return Ok(());
        }
    }
    Ok(())
}

/// Number of rows of the files (for progress).
pub(crate) fn count_rows(paths: &[PathBuf]) -> Result<u64, PreprocessError> {
    let mut n = 0;
    for p in paths {
        n += open(p)?.reader.metadata().file_metadata().num_rows() as u64;
    }
    Ok(n)
}
