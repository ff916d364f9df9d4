//! MAT-file level 5 reader.

use std::io::Read;

use super::{mi, mx, MatError, MatFile, MatValue, MatVariable, NumericClass};

/// Nesting deeper than this is treated as malformed (guards the stack).
const MAX_DEPTH: usize = 64;

/// Parse a whole MAT-file held in memory.
///
/// Handles both byte orders, compressed and uncompressed variables, and
/// converts numeric data stored in a smaller type than its class.
pub fn read_mat(bytes: &[u8]) -> Result<MatFile, MatError> {
    if bytes.len() < 128 {
        return Err(MatError::BadHeader(format!(
            "file is {} bytes, shorter than the 128-byte header",
            bytes.len()
        )));
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(MatError::BadHeader(format!(
                "endian indicator is {other:?}, expected \"IM\" or \"MI\""
            )))
        }
    };
    let version = if big_endian {
        u16::from_be_bytes([bytes[124], bytes[125]])
    } else {
        u16::from_le_bytes([bytes[124], bytes[125]])
    };
    if version != 0x0100 {
        return Err(MatError::BadHeader(format!(
            "version field is {version:#06x}, expected 0x0100 (level 5)"
        )));
    }
    if bytes[..4].contains(&0) {
        return Err(MatError::BadHeader(
            "header text starts with NUL bytes (a level 4 or v7.3/HDF5 file?)".into(),
        ));
    }
    let header_text = String::from_utf8_lossy(&bytes[..116])
        .trim_end_matches(['\0', ' '])
        .to_string();

    let mut cur = Cursor {
        data: bytes,
        pos: 128,
        big_endian,
        context: None,
    };
    let mut variables = Vec::new();
    while cur.remaining() > 0 {
        if cur.remaining() < 8 {
            // Some writers pad the end of the file; only zeros are accepted.
            if cur.data[cur.pos..].iter().all(|&b| b == 0) {
                break;
            }
            return Err(cur.malformed("trailing bytes shorter than an element tag"));
        }
        let tag_at = cur.pos;
        let (ty, n) = cur.tag()?;
        match ty {
            mi::MATRIX => {
                let body = cur.take(n)?;
                let mut sub = cur.sub(body, tag_at + 8, None);
                if let Some(var) = read_matrix_body(&mut sub, 0)? {
                    variables.push(var);
                }
                cur.align8()?;
            }
            mi::COMPRESSED => {
                let body = cur.take(n)?;
                let mut inflated = Vec::new();
                flate2::read::ZlibDecoder::new(body)
                    .read_to_end(&mut inflated)
                    .map_err(|e| MatError::Malformed {
                        location: format!("byte {tag_at}"),
                        message: format!("cannot inflate compressed element: {e}"),
                    })?;
                let mut inner = Cursor {
                    data: &inflated,
                    pos: 0,
                    big_endian,
                    context: Some(tag_at),
                };
                while inner.remaining() >= 8 {
                    let inner_at = inner.pos;
                    let (ity, inn) = inner.tag()?;
                    if ity != mi::MATRIX {
                        return Err(MatError::Malformed {
                            location: inner.location_of(inner_at),
                            message: format!(
                                "compressed element holds data type {ity}, expected miMATRIX (14)"
                            ),
                        });
                    }
                    let ibody = inner.take(inn)?;
                    let mut sub = inner.sub(ibody, inner_at + 8, Some(tag_at));
                    if let Some(var) = read_matrix_body(&mut sub, 0)? {
                        variables.push(var);
                    }
                    inner.align8_lenient();
                }
            }
            other => {
                return Err(MatError::Malformed {
                    location: format!("byte {tag_at}"),
                    message: format!(
                        "top-level element has data type {other}, expected miMATRIX (14) or miCOMPRESSED (15)"
                    ),
                })
            }
        }
    }
    Ok(MatFile {
        header_text,
        variables,
    })
}

/// A byte-order aware reader over a slice.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    big_endian: bool,
    /// Byte offset of the enclosing compressed element, if inside one
    /// (then positions are offsets in its inflated data).
    context: Option<usize>,
}

/// `base` shifts positions reported for a sub-cursor.
struct Sub<'a> {
    cur: Cursor<'a>,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn location_of(&self, pos: usize) -> String {
        match self.context {
            Some(c) => format!("byte {pos} of the compressed element at byte {c}"),
            None => format!("byte {pos}"),
        }
    }

    fn malformed(&self, message: &str) -> MatError {
        MatError::Malformed {
            location: self.location_of(self.pos),
            message: message.to_string(),
        }
    }

    fn sub<'b>(&self, data: &'b [u8], base: usize, context: Option<usize>) -> Sub<'b> {
        Sub {
            cur: Cursor {
                data,
                pos: 0,
                big_endian: self.big_endian,
                context: context.or(self.context),
            },
            base,
        }
    }

    fn u32(&mut self) -> Result<u32, MatError> {
        let b = self.take(4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Ok(if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MatError> {
        if n > self.remaining() {
            return Err(self.malformed(&format!(
                "element needs {n} bytes but only {} remain (truncated file?)",
                self.remaining()
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads a tag; returns (data type, byte count). For the small data
    /// element format the 4 data bytes follow and are consumed by `take`,
    /// the 4-byte padding is handled by the caller via `align8`.
    fn tag(&mut self) -> Result<(u32, usize), MatError> {
        let first = self.u32()?;
        if first >> 16 != 0 {
            // Small data element: (bytes << 16) | type, data in the next 4 bytes.
            let n = (first >> 16) as usize;
            if n > 4 {
                return Err(
                    self.malformed(&format!("small data element claims {n} bytes (at most 4)"))
                );
            }
            Ok((first & 0xffff, n))
        } else {
            let n = self.u32()? as usize;
            Ok((first, n))
        }
    }

    fn align8(&mut self) -> Result<(), MatError> {
        let pad = (8 - self.pos % 8) % 8;
        let pad = pad.min(self.remaining());
        self.pos += pad;
        Ok(())
    }

    fn align8_lenient(&mut self) {
        let pad = (8 - self.pos % 8) % 8;
        self.pos += pad.min(self.remaining());
    }
}

impl<'a> Sub<'a> {
    fn location(&self) -> String {
        self.cur.location_of(self.base + self.cur.pos)
    }

    fn malformed(&self, message: String) -> MatError {
        MatError::Malformed {
            location: self.location(),
            message,
        }
    }

    /// Reads one sub-element: returns (data type, data bytes), consuming
    /// its padding (small elements occupy exactly 8 bytes).
    fn element(&mut self) -> Result<(u32, &'a [u8]), MatError> {
        if self.cur.remaining() < 8 {
            return Err(self.malformed(format!(
                "expected an element tag, only {} bytes remain",
                self.cur.remaining()
            )));
        }
        let first_raw = {
            let b = &self.cur.data[self.cur.pos..self.cur.pos + 4];
            let a = [b[0], b[1], b[2], b[3]];
            if self.cur.big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let (ty, n) = self.cur.tag().map_err(|e| self.rebase(e))?;
        if first_raw >> 16 != 0 {
            let data = self.cur.take(4).map_err(|e| self.rebase(e))?;
            return Ok((ty, &data[..n]));
        }
        let data = self.cur.take(n).map_err(|_| {
            self.malformed(format!(
                "element of type {ty} needs {n} bytes but only {} remain",
                self.cur.remaining()
            ))
        })?;
        self.cur.align8_lenient();
        Ok((ty, data))
    }

    fn rebase(&self, e: MatError) -> MatError {
        match e {
            MatError::Malformed { message, .. } => MatError::Malformed {
                location: self.location(),
                message,
            },
            other => other,
        }
    }
}

/// Reads the body of an miMATRIX element. An empty body is MATLAB's `[]`.
/// Returns `None` only for a top-level element with no content at all.
fn read_matrix_body(sub: &mut Sub<'_>, depth: usize) -> Result<Option<MatVariable>, MatError> {
    if sub.cur.data.is_empty() {
        return Ok(Some(MatVariable::new("", MatValue::empty())));
    }
    if depth > MAX_DEPTH {
        return Err(sub.malformed(format!("arrays nested deeper than {MAX_DEPTH} levels")));
    }
    let flags_at = sub.location();
    let (ty, flags) = sub.element()?;
    if ty != mi::UINT32 || flags.len() != 8 {
        return Err(MatError::Malformed {
            location: flags_at,
            message: format!(
                "array flags must be miUINT32 with 8 bytes, found type {ty} with {} bytes",
                flags.len()
            ),
        });
    }
    let flags0 = decode_u32(flags, sub.cur.big_endian);
    let class_code = (flags0 & 0xff) as u8;
    let complex = flags0 & 0x0800 != 0;

    let dims_at = sub.location();
    let (ty, dims_bytes) = sub.element()?;
    if ty != mi::INT32 || dims_bytes.len() % 4 != 0 || dims_bytes.len() < 8 {
        return Err(MatError::Malformed {
            location: dims_at,
            message: format!(
                "dimensions must be miINT32 with at least two values, found type {ty} with {} bytes",
                dims_bytes.len()
            ),
        });
    }
    let mut dims = Vec::with_capacity(dims_bytes.len() / 4);
    for c in dims_bytes.chunks_exact(4) {
        let d = decode_u32(c, sub.cur.big_endian) as i32;
        if d < 0 {
            return Err(MatError::Malformed {
                location: dims_at,
                message: format!("negative dimension {d}"),
            });
        }
        dims.push(d as usize);
    }
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| MatError::Malformed {
            location: dims_at.clone(),
            message: format!("dimensions {dims:?} overflow"),
        })?;

    let name_at = sub.location();
    let (ty, name_bytes) = sub.element()?;
    if ty != mi::INT8 && ty != mi::UINT8 {
        return Err(MatError::Malformed {
            location: name_at,
            message: format!("array name must be miINT8, found type {ty}"),
        });
    }
    let name = String::from_utf8_lossy(name_bytes).to_string();

    let value = match class_code {
        mx::CELL => {
            check_room(sub, count, 1)?;
            let mut cells = Vec::with_capacity(count.min(1 << 20));
            for _ in 0..count {
                cells.push(read_nested(sub, depth)?);
            }
            MatValue::Cell { dims, cells }
        }
        mx::STRUCT => {
            let len_at = sub.location();
            let (ty, len_bytes) = sub.element()?;
            if ty != mi::INT32 || len_bytes.len() != 4 {
                return Err(MatError::Malformed {
                    location: len_at,
                    message: "struct field name length must be one miINT32".into(),
                });
            }
            let name_len = decode_u32(len_bytes, sub.cur.big_endian) as usize;
            let names_at = sub.location();
            let (ty, names) = sub.element()?;
            if ty != mi::INT8 && ty != mi::UINT8 {
                return Err(MatError::Malformed {
                    location: names_at,
                    message: format!("struct field names must be miINT8, found type {ty}"),
                });
            }
            if !names.is_empty() && (name_len == 0 || names.len() % name_len != 0) {
                return Err(MatError::Malformed {
                    location: names_at,
                    message: format!(
                        "{} bytes of field names are not a multiple of the name length {name_len}",
                        names.len()
                    ),
                });
            }
            let fields: Vec<String> = names
                .chunks_exact(name_len.max(1))
                .map(|c| {
                    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                    String::from_utf8_lossy(&c[..end]).to_string()
                })
                .collect();
            check_room(sub, count, fields.len())?;
            let mut elements = Vec::with_capacity(count.min(1 << 20));
            for _ in 0..count {
                let mut values = Vec::with_capacity(fields.len());
                for _ in 0..fields.len() {
                    values.push(read_nested(sub, depth)?);
                }
                elements.push(values);
            }
            MatValue::Struct {
                dims,
                fields,
                elements,
            }
        }
        mx::CHAR => {
            let text = if count == 0 && sub.cur.remaining() == 0 {
                String::new()
            } else {
                let data_at = sub.location();
                let (ty, data) = sub.element()?;
                let units = decode_char_units(ty, data, sub.cur.big_endian).map_err(|m| {
                    MatError::Malformed {
                        location: data_at.clone(),
                        message: m,
                    }
                })?;
                if units.len() != count {
                    return Err(MatError::Malformed {
                        location: data_at,
                        message: format!(
                            "char array {dims:?} needs {count} characters, data holds {}",
                            units.len()
                        ),
                    });
                }
                char_matrix_text(&dims, &units).map_err(|m| MatError::Malformed {
                    location: data_at,
                    message: m,
                })?
            };
            MatValue::Char { dims, text }
        }
        mx::SPARSE | mx::OBJECT => {
            return Err(MatError::Unsupported {
                location: flags_at,
                message: format!(
                    "array '{name}' is {} (not needed for meta.mat)",
                    if class_code == mx::SPARSE {
                        "sparse"
                    } else {
                        "an object"
                    }
                ),
            })
        }
        code => {
            let class = NumericClass::from_code(code).ok_or_else(|| MatError::Unsupported {
                location: flags_at.clone(),
                message: format!("array '{name}' has unknown class code {code}"),
            })?;
            let real = read_numeric_part(sub, count, "real")?;
            let imag = if complex {
                Some(read_numeric_part(sub, count, "imaginary")?)
            } else {
                None
            };
            MatValue::Numeric {
                class,
                dims,
                real,
                imag,
            }
        }
    };
    Ok(Some(MatVariable { name, value }))
}

/// Elements read of a struct array without fields. Its elements take no
/// bytes in the file, so its dimensions alone would decide what the reader
/// allocates (16 million elements of an 800-byte file took 400 MB).
const MAX_FIELDLESS_ELEMENTS: usize = 1 << 12;

/// Each nested array takes at least 8 bytes: refuse counts the data cannot
/// hold (a damaged dimension would otherwise loop for ages).
fn check_room(sub: &Sub<'_>, count: usize, per_element: usize) -> Result<(), MatError> {
    if per_element == 0 {
        if count > MAX_FIELDLESS_ELEMENTS {
            return Err(MatError::Unsupported {
                location: sub.location(),
                message: format!(
                    "a struct array without fields of {count} elements (at most {MAX_FIELDLESS_ELEMENTS} are read)"
                ),
            });
        }
        return Ok(());
    }
    let fits = count.saturating_mul(per_element).saturating_mul(8) <= sub.cur.remaining();
    if !fits {
        return Err(sub.malformed(format!(
            "{count} elements do not fit in the {} bytes that remain",
            sub.cur.remaining()
        )));
    }
    Ok(())
}

/// Reads a nested miMATRIX (struct field or cell).
fn read_nested(sub: &mut Sub<'_>, depth: usize) -> Result<MatValue, MatError> {
    let at = sub.cur.pos;
    let (ty, body) = sub.element()?;
    if ty != mi::MATRIX {
        return Err(MatError::Malformed {
            location: sub.cur.location_of(sub.base + at),
            message: format!("struct field or cell must be miMATRIX (14), found type {ty}"),
        });
    }
    let base = sub.base + at + 8;
    let mut inner = sub.cur.sub(body, base, None);
    Ok(read_matrix_body(&mut inner, depth + 1)?
        .map(|v| v.value)
        .unwrap_or_else(MatValue::empty))
}

fn read_numeric_part(sub: &mut Sub<'_>, count: usize, part: &str) -> Result<Vec<f64>, MatError> {
    if count == 0 && sub.cur.remaining() == 0 {
        return Ok(Vec::new());
    }
    let at = sub.location();
    let (ty, data) = sub.element()?;
    let values = decode_numbers(ty, data, sub.cur.big_endian).map_err(|m| MatError::Malformed {
        location: at.clone(),
        message: m,
    })?;
    if values.len() != count {
        return Err(MatError::Malformed {
            location: at,
            message: format!(
                "{part} part holds {} values, dimensions need {count}",
                values.len()
            ),
        });
    }
    Ok(values)
}

fn decode_u32(b: &[u8], big_endian: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big_endian {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn fixed<const N: usize>(c: &[u8], big_endian: bool) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    if big_endian {
        a.reverse();
    }
    a
}

/// Decodes numeric element data of any stored type to `f64`.
fn decode_numbers(ty: u32, data: &[u8], be: bool) -> Result<Vec<f64>, String> {
    fn each<const N: usize>(
        data: &[u8],
        be: bool,
        f: impl Fn([u8; N]) -> f64,
    ) -> Result<Vec<f64>, String> {
        if !data.len().is_multiple_of(N) {
            return Err(format!(
                "{} data bytes are not a multiple of the {N}-byte element size",
                data.len()
            ));
        }
        Ok(data.chunks_exact(N).map(|c| f(fixed::<N>(c, be))).collect())
    }
    match ty {
        mi::INT8 => each::<1>(data, be, |a| i8::from_le_bytes(a) as f64),
        mi::UINT8 => each::<1>(data, be, |a| a[0] as f64),
        mi::INT16 => each::<2>(data, be, |a| i16::from_le_bytes(a) as f64),
        mi::UINT16 => each::<2>(data, be, |a| u16::from_le_bytes(a) as f64),
        mi::INT32 => each::<4>(data, be, |a| i32::from_le_bytes(a) as f64),
        mi::UINT32 => each::<4>(data, be, |a| u32::from_le_bytes(a) as f64),
        mi::SINGLE => each::<4>(data, be, |a| f32::from_le_bytes(a) as f64),
        mi::DOUBLE => each::<8>(data, be, f64::from_le_bytes),
        mi::INT64 => each::<8>(data, be, |a| i64::from_le_bytes(a) as f64),
        mi::UINT64 => each::<8>(data, be, |a| u64::from_le_bytes(a) as f64),
        other => Err(format!("data type {other} is not numeric")),
    }
}

/// Decodes char data to UTF-16 code units.
fn decode_char_units(ty: u32, data: &[u8], be: bool) -> Result<Vec<u16>, String> {
    match ty {
        mi::UTF16 | mi::UINT16 => {
            if !data.len().is_multiple_of(2) {
                return Err(format!("{} bytes of UTF-16 text (odd count)", data.len()));
            }
            Ok(data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes(fixed::<2>(c, be)))
                .collect())
        }
        mi::UTF8 => {
            let s = std::str::from_utf8(data).map_err(|e| format!("invalid UTF-8 text: {e}"))?;
            Ok(s.encode_utf16().collect())
        }
        mi::UINT8 | mi::INT8 => Ok(data.iter().map(|&b| b as u16).collect()),
        mi::UTF32 => {
            if !data.len().is_multiple_of(4) {
                return Err(format!("{} bytes of UTF-32 text", data.len()));
            }
            let mut units = Vec::new();
            for c in data.chunks_exact(4) {
                let v = u32::from_le_bytes(fixed::<4>(c, be));
                let ch = char::from_u32(v).ok_or_else(|| format!("invalid UTF-32 code {v:#x}"))?;
                let mut buf = [0u16; 2];
                units.extend_from_slice(ch.encode_utf16(&mut buf));
            }
            Ok(units)
        }
        other => Err(format!("char data has non-text data type {other}")),
    }
}

/// Turns column-major char units into text: rows joined with '\n' (an
/// empty matrix gives the empty string).
fn char_matrix_text(dims: &[usize], units: &[u16]) -> Result<String, String> {
    if dims.len() > 2 && dims[2..].iter().any(|&d| d != 1) {
        return Err(format!(
            "char arrays with dimensions {dims:?} are not supported"
        ));
    }
    let rows = dims[0];
    // An empty matrix (N x 0) has no text: its rows are not joined, or a
    // few bytes claiming a billion empty rows would read as a billion
    // newlines.
    if rows <= 1 || units.is_empty() {
        return String::from_utf16(units).map_err(|e| format!("invalid UTF-16 text: {e}"));
    }
    let cols = dims[1];
    let mut out = Vec::with_capacity(units.len() + rows);
    for r in 0..rows {
        if r > 0 {
            out.push(b'\n' as u16);
        }
        for c in 0..cols {
            out.push(units[c * rows + r]);
        }
    }
    String::from_utf16(&out).map_err(|e| format!("invalid UTF-16 text: {e}"))
}
