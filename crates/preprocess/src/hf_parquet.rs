//! Hugging Face `imagenet-1k` as parquet: `train-*.parquet` and
//! `validation-*.parquet`, each row an `image` struct (`bytes`, `path`) and
//! an `int64` `label`, the class's index in the sorted class list.
//!
//! The names and labels are read first (two small columns of every row
//! group); the images then follow in the canonical order, one image column
//! read a page at a time through the row group that holds it, so that no
//! more than a page of images is held, whatever the file's size.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parquet::basic::Type as PhysicalType;
use parquet::column::reader::{get_typed_column_reader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::PreprocessError;
use crate::hf_tar::strip_wnid_suffix;
use crate::source::{Labeler, MemberBytes, MAX_MEMBER_BYTES};

/// Leaf columns of Hugging Face's schema.
const BYTES: &str = "image.bytes";
const PATH: &str = "image.path";
const LABEL: &str = "label";

/// Rows read at a time from the name and label columns.
const SCAN_BATCH: usize = 4096;

/// One open parquet file and where its columns are.
struct ParquetFile {
    name: String,
    reader: SerializedFileReader<File>,
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
    let reader = SerializedFileReader::new(f).map_err(perr(&name))?;
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

/// The values of one optional leaf column of a row group, `None` for nulls.
fn read_column<T: parquet::data_type::DataType>(
    pf: &ParquetFile,
    group: usize,
    col: usize,
) -> Result<Vec<Option<T::T>>, PreprocessError> {
    let rg = pf.reader.get_row_group(group).map_err(perr(&pf.name))?;
    let rows = rg.metadata().num_rows() as usize;
    let max_def = rg.metadata().column(col).column_descr().max_def_level();
    let mut reader: ColumnReaderImpl<T> =
        get_typed_column_reader(rg.get_column_reader(col).map_err(perr(&pf.name))?);
    let mut out = Vec::with_capacity(rows);
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
