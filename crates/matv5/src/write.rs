//! MAT-file level 5 writer (little-endian).

use std::io::Write;

use super::{mi, mx, MatError, MatValue, MatVariable, NumericClass};

/// How [`write_mat`] stores the data.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Wrap each variable in a zlib `miCOMPRESSED` element (as MATLAB 7 does).
    pub compress: bool,
    /// Store integral `double` data in the smallest integer type that holds
    /// it (`miUINT8`, `miINT8`, ... as MATLAB does); readers convert back.
    pub shrink_numeric: bool,
    /// Store char data as `miUTF8` instead of `miUTF16`.
    pub char_utf8: bool,
    /// The descriptive header text (at most 116 bytes are kept).
    pub header_text: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compress: false,
            shrink_numeric: true,
            char_utf8: false,
            header_text: "MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: preprocess::matv5"
                .to_string(),
        }
    }
}

/// Writes a MAT-file holding `variables` to `out`.
pub fn write_mat<W: Write>(
    out: &mut W,
    variables: &[MatVariable],
    opts: &WriteOptions,
) -> Result<(), MatError> {
    let mut header = [b' '; 128];
    let text = opts.header_text.as_bytes();
    let n = text.len().min(116);
    header[..n].copy_from_slice(&text[..n]);
    header[116..124].fill(0);
    header[124..126].copy_from_slice(&0x0100u16.to_le_bytes());
    header[126..128].copy_from_slice(b"IM");
    out.write_all(&header)?;
    for var in variables {
        let mut element = Vec::new();
        write_matrix(&mut element, &var.name, &var.value, opts)?;
        if opts.compress {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&element)?;
            let z = enc.finish()?;
            let len = u32::try_from(z.len()).map_err(|_| {
                MatError::InvalidValue(format!("variable '{}' too large", var.name))
            })?;
            out.write_all(&mi::COMPRESSED.to_le_bytes())?;
            out.write_all(&len.to_le_bytes())?;
            out.write_all(&z)?;
        } else {
            out.write_all(&element)?;
        }
    }
    Ok(())
}

/// Appends a data element, using the small format for up to 4 bytes.
fn element(out: &mut Vec<u8>, ty: u32, data: &[u8], allow_small: bool) {
    if allow_small && data.len() <= 4 && !data.is_empty() {
        out.extend_from_slice(&(((data.len() as u32) << 16) | ty).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len() + 4 - data.len(), 0);
    } else {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len() + (8 - data.len() % 8) % 8, 0);
    }
}

fn check_len(what: &str, dims: &[usize], n: usize) -> Result<(), MatError> {
    let want: usize = dims.iter().product();
    if dims.len() < 2 {
        return Err(MatError::InvalidValue(format!(
            "{what} has {} dimensions, at least two are needed",
            dims.len()
        )));
    }
    if want != n {
        return Err(MatError::InvalidValue(format!(
            "{what} has dimensions {dims:?} ({want} elements) but {n} values"
        )));
    }
    Ok(())
}

/// Appends a whole miMATRIX element (tag included).
fn write_matrix(
    out: &mut Vec<u8>,
    name: &str,
    value: &MatValue,
    opts: &WriteOptions,
) -> Result<(), MatError> {
    let mut body = Vec::new();
    let (class_code, complex) = match value {
        MatValue::Numeric { class, imag, .. } => (class.code(), imag.is_some()),
        MatValue::Char { .. } => (mx::CHAR, false),
        MatValue::Struct { .. } => (mx::STRUCT, false),
        MatValue::Cell { .. } => (mx::CELL, false),
    };
    let flags = (class_code as u32) | if complex { 0x0800 } else { 0 };
    let mut flag_bytes = flags.to_le_bytes().to_vec();
    flag_bytes.extend_from_slice(&0u32.to_le_bytes());
    element(&mut body, mi::UINT32, &flag_bytes, false);

    let dims = value.dims();
    let mut dim_bytes = Vec::with_capacity(dims.len() * 4);
    for &d in dims {
        let d = i32::try_from(d)
            .map_err(|_| MatError::InvalidValue(format!("dimension {d} too large")))?;
        dim_bytes.extend_from_slice(&d.to_le_bytes());
    }
    element(&mut body, mi::INT32, &dim_bytes, false);
    element(&mut body, mi::INT8, name.as_bytes(), true);

    match value {
        MatValue::Numeric {
            class,
            dims,
            real,
            imag,
        } => {
            check_len(&format!("numeric array '{name}'"), dims, real.len())?;
            write_numbers(&mut body, *class, real, opts, name)?;
            if let Some(im) = imag {
                check_len(&format!("imaginary part of '{name}'"), dims, im.len())?;
                write_numbers(&mut body, *class, im, opts, name)?;
            }
        }
        MatValue::Char { dims, text } => {
            let units = char_units(dims, text, name)?;
            if opts.char_utf8 {
                let s = String::from_utf16(&units)
                    .map_err(|e| MatError::InvalidValue(format!("char array '{name}': {e}")))?;
                element(&mut body, mi::UTF8, s.as_bytes(), true);
            } else {
                let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
                element(&mut body, mi::UTF16, &bytes, true);
            }
        }
        MatValue::Struct {
            dims,
            fields,
            elements,
        } => {
            check_len(&format!("struct array '{name}'"), dims, elements.len())?;
            let longest = fields.iter().map(|f| f.len()).max().unwrap_or(0);
            let name_len = (longest + 1).max(32);
            element(&mut body, mi::INT32, &(name_len as i32).to_le_bytes(), true);
            let mut names = vec![0u8; name_len * fields.len()];
            for (i, f) in fields.iter().enumerate() {
                if f.is_empty() || f.contains('\0') {
                    return Err(MatError::InvalidValue(format!(
                        "struct '{name}' has an invalid field name {f:?}"
                    )));
                }
                names[i * name_len..i * name_len + f.len()].copy_from_slice(f.as_bytes());
            }
            element(&mut body, mi::INT8, &names, false);
            for (i, values) in elements.iter().enumerate() {
                if values.len() != fields.len() {
                    return Err(MatError::InvalidValue(format!(
                        "element {i} of struct '{name}' has {} values for {} fields",
                        values.len(),
                        fields.len()
                    )));
                }
                for v in values {
                    write_matrix(&mut body, "", v, opts)?;
                }
            }
        }
        MatValue::Cell { dims, cells } => {
            check_len(&format!("cell array '{name}'"), dims, cells.len())?;
            for v in cells {
                write_matrix(&mut body, "", v, opts)?;
            }
        }
    }
    let len = u32::try_from(body.len())
        .map_err(|_| MatError::InvalidValue(format!("array '{name}' too large")))?;
    out.extend_from_slice(&mi::MATRIX.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// UTF-16 code units of a char array in column-major order.
fn char_units(dims: &[usize], text: &str, name: &str) -> Result<Vec<u16>, MatError> {
    let what = format!("char array '{name}'");
    if dims.len() > 2 && dims[2..].iter().any(|&d| d != 1) {
        return Err(MatError::InvalidValue(format!(
            "{what}: dimensions {dims:?} are not supported"
        )));
    }
    if dims.len() < 2 || dims[0] <= 1 || dims.contains(&0) {
        let units: Vec<u16> = text.encode_utf16().collect();
        check_len(&what, dims, units.len())?;
        return Ok(units);
    }
    let (rows, cols) = (dims[0], dims[1]);
    let lines: Vec<Vec<u16>> = text
        .split('\n')
        .map(|l| l.encode_utf16().collect())
        .collect();
    if lines.len() != rows || lines.iter().any(|l| l.len() != cols) {
        return Err(MatError::InvalidValue(format!(
            "{what}: text is not {rows} lines of {cols} characters"
        )));
    }
    let mut units = vec![0u16; rows * cols];
    for (r, line) in lines.iter().enumerate() {
        for (c, &u) in line.iter().enumerate() {
            units[c * rows + r] = u;
        }
    }
    Ok(units)
}

/// The storage type for a double array's values when shrinking.
fn smallest_type(values: &[f64]) -> u32 {
    let integral = values
        .iter()
        .all(|&x| x.fract() == 0.0 && x.is_finite() && !(x == 0.0 && x.is_sign_negative()));
    if !integral || values.is_empty() {
        return mi::DOUBLE;
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let fits = |a: f64, b: f64| lo >= a && hi <= b;
    if fits(0.0, u8::MAX as f64) {
        mi::UINT8
    } else if fits(i8::MIN as f64, i8::MAX as f64) {
        mi::INT8
    } else if fits(0.0, u16::MAX as f64) {
        mi::UINT16
    } else if fits(i16::MIN as f64, i16::MAX as f64) {
        mi::INT16
    } else if fits(0.0, u32::MAX as f64) {
        mi::UINT32
    } else if fits(i32::MIN as f64, i32::MAX as f64) {
        mi::INT32
    } else {
        mi::DOUBLE
    }
}

fn write_numbers(
    out: &mut Vec<u8>,
    class: NumericClass,
    values: &[f64],
    opts: &WriteOptions,
    name: &str,
) -> Result<(), MatError> {
    let ty = match class {
        NumericClass::Double if opts.shrink_numeric => smallest_type(values),
        NumericClass::Double => mi::DOUBLE,
        NumericClass::Single => mi::SINGLE,
        NumericClass::Int8 => mi::INT8,
        NumericClass::UInt8 => mi::UINT8,
        NumericClass::Int16 => mi::INT16,
        NumericClass::UInt16 => mi::UINT16,
        NumericClass::Int32 => mi::INT32,
        NumericClass::UInt32 => mi::UINT32,
        NumericClass::Int64 => mi::INT64,
        NumericClass::UInt64 => mi::UINT64,
    };
    let bad = |x: f64| {
        MatError::InvalidValue(format!(
            "value {x} of '{name}' does not fit its class {class:?}"
        ))
    };
    let mut bytes = Vec::with_capacity(values.len() * 8);
    for &x in values {
        macro_rules! int {
            ($t:ty) => {{
                if x.fract() != 0.0 || x < <$t>::MIN as f64 || x > <$t>::MAX as f64 {
                    return Err(bad(x));
                }
                bytes.extend_from_slice(&(x as $t).to_le_bytes());
            }};
        }
        match ty {
            mi::DOUBLE => bytes.extend_from_slice(&x.to_le_bytes()),
            mi::SINGLE => {
                // Like the integer classes: a value the class cannot hold is
                // refused, not rounded.
                let y = x as f32;
                if y as f64 != x && !x.is_nan() {
                    return Err(bad(x));
                }
                bytes.extend_from_slice(&y.to_le_bytes())
            }
            mi::INT8 => int!(i8),
            mi::UINT8 => int!(u8),
            mi::INT16 => int!(i16),
            mi::UINT16 => int!(u16),
            mi::INT32 => int!(i32),
            mi::UINT32 => int!(u32),
            mi::INT64 => int!(i64),
            mi::UINT64 => int!(u64),
            _ => unreachable!("numeric storage types only"),
        }
    }
    element(out, ty, &bytes, true);
    Ok(())
}
