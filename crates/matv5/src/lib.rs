//! MATLAB MAT-file level 5 reader and writer, enough for ImageNet's
//! `data/meta.mat` (a struct array of synsets).
//!
//! Supported: the 128-byte header (both byte orders when reading),
//! `miMATRIX` and `miCOMPRESSED` (zlib) elements, the small-data-element
//! format, numeric arrays of every class (data stored in any numeric type,
//! e.g. `miUINT8` data for a `double` array, is converted to `f64`), char
//! arrays (`miUTF16`/`miUINT16`/`miUTF8`/`miUINT8`/`miINT8`), struct arrays,
//! cell arrays, and zero-byte `miMATRIX` elements (MATLAB's empty `[]`).
//! Not supported: sparse arrays and objects (a clear error).
//!
//! Why not the `matrw` crate (0.1.4, tried on the devkit's layout and on
//! what the generator writes): it reads well-formed files, but it panics
//! on damaged ones (truncated files, flipped bits, a bad zlib stream) where
//! this reader returns an error; it rejects headers without the comma after
//! `MAT-file` (scipy's) and char data stored as `miUINT16`; it does not
//! convert numeric classes to `f64` on reading; and its writer stores empty
//! doubles and empty strings as `uint8`, stamps the current time into the
//! header (so output is not reproducible) and writes only to a path.
//!
//! ```
//! use matv5::{read_mat, write_mat, MatValue, MatVariable, WriteOptions};
//! let v = MatVariable::new("x", MatValue::row(vec![1.0, 2.5]));
//! let mut bytes = Vec::new();
//! write_mat(&mut bytes, &[v.clone()], &WriteOptions::default()).unwrap();
//! assert_eq!(read_mat(&bytes).unwrap().variables, vec![v]);
//! ```

mod read;
mod write;

pub use read::read_mat;
pub use write::{write_mat, WriteOptions};

/// MATLAB array classes (`mxCLASS`), numeric ones only; char, struct and
/// cell arrays are separate [`MatValue`] variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericClass {
    /// `mxDOUBLE_CLASS` (6)
    Double,
    /// `mxSINGLE_CLASS` (7)
    Single,
    /// `mxINT8_CLASS` (8)
    Int8,
    /// `mxUINT8_CLASS` (9)
    UInt8,
    /// `mxINT16_CLASS` (10)
    Int16,
    /// `mxUINT16_CLASS` (11)
    UInt16,
    /// `mxINT32_CLASS` (12)
    Int32,
    /// `mxUINT32_CLASS` (13)
    UInt32,
    /// `mxINT64_CLASS` (14)
    Int64,
    /// `mxUINT64_CLASS` (15)
    UInt64,
}

impl NumericClass {
    /// The `mxCLASS` code stored in the array flags.
    pub fn code(self) -> u8 {
        match self {
            NumericClass::Double => 6,
            NumericClass::Single => 7,
            NumericClass::Int8 => 8,
            NumericClass::UInt8 => 9,
            NumericClass::Int16 => 10,
            NumericClass::UInt16 => 11,
            NumericClass::Int32 => 12,
            NumericClass::UInt32 => 13,
            NumericClass::Int64 => 14,
            NumericClass::UInt64 => 15,
        }
    }

    /// The numeric class of an `mxCLASS` code, if it is numeric.
    pub fn from_code(code: u8) -> Option<NumericClass> {
        Some(match code {
            6 => NumericClass::Double,
            7 => NumericClass::Single,
            8 => NumericClass::Int8,
            9 => NumericClass::UInt8,
            10 => NumericClass::Int16,
            11 => NumericClass::UInt16,
            12 => NumericClass::Int32,
            13 => NumericClass::UInt32,
            14 => NumericClass::Int64,
            15 => NumericClass::UInt64,
            _ => return None,
        })
    }
}

/// One MATLAB array. Every variant keeps its dimensions; element data is in
/// MATLAB's column-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    /// A numeric array of any class, values converted to `f64` (64-bit
    /// integers beyond 2^53 lose precision).
    Numeric {
        /// The declared class (what MATLAB would show).
        class: NumericClass,
        /// Dimensions, at least two.
        dims: Vec<usize>,
        /// Real part, column-major, `product(dims)` values.
        real: Vec<f64>,
        /// Imaginary part for complex arrays.
        imag: Option<Vec<f64>>,
    },
    /// A char array. For the usual `1xN` row this is the string; a
    /// multi-row char matrix is stored as its rows joined with `'\n'`, an
    /// empty one (`N x 0`) as the empty string.
    Char {
        /// Dimensions, at least two.
        dims: Vec<usize>,
        /// The text.
        text: String,
    },
    /// A struct array: `elements[i][f]` is field `fields[f]` of element `i`
    /// (elements in column-major order).
    Struct {
        /// Dimensions, at least two.
        dims: Vec<usize>,
        /// Field names, in stored order.
        fields: Vec<String>,
        /// One vector of field values per element.
        elements: Vec<Vec<MatValue>>,
    },
    /// A cell array, cells in column-major order.
    Cell {
        /// Dimensions, at least two.
        dims: Vec<usize>,
        /// The cells.
        cells: Vec<MatValue>,
    },
}

impl MatValue {
    /// A 1x1 double.
    pub fn scalar(x: f64) -> MatValue {
        MatValue::Numeric {
            class: NumericClass::Double,
            dims: vec![1, 1],
            real: vec![x],
            imag: None,
        }
    }

    /// A 1xN double row vector (`1x0` when empty).
    pub fn row(values: Vec<f64>) -> MatValue {
        MatValue::Numeric {
            class: NumericClass::Double,
            dims: vec![1, values.len()],
            real: values,
            imag: None,
        }
    }

    /// MATLAB's `[]`: a 0x0 double.
    pub fn empty() -> MatValue {
        MatValue::Numeric {
            class: NumericClass::Double,
            dims: vec![0, 0],
            real: Vec::new(),
            imag: None,
        }
    }

    /// A 1xN char row (`0x0` when empty, as MATLAB stores `''`).
    pub fn string(text: &str) -> MatValue {
        let n = text.encode_utf16().count();
        MatValue::Char {
            dims: if n == 0 { vec![0, 0] } else { vec![1, n] },
            text: text.to_string(),
        }
    }

    /// The dimensions of the array.
    pub fn dims(&self) -> &[usize] {
        match self {
            MatValue::Numeric { dims, .. }
            | MatValue::Char { dims, .. }
            | MatValue::Struct { dims, .. }
            | MatValue::Cell { dims, .. } => dims,
        }
    }

    /// Number of elements (product of the dimensions).
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text of a char array.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MatValue::Char { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The real values of a numeric array.
    pub fn as_f64s(&self) -> Option<&[f64]> {
        match self {
            MatValue::Numeric { real, .. } => Some(real),
            _ => None,
        }
    }

    /// The single value of a 1x1 numeric array.
    pub fn as_scalar(&self) -> Option<f64> {
        match self.as_f64s() {
            Some([x]) => Some(*x),
            _ => None,
        }
    }

    /// Field `name` of element `index` of a struct array.
    pub fn field(&self, index: usize, name: &str) -> Option<&MatValue> {
        match self {
            MatValue::Struct {
                fields, elements, ..
            } => {
                let f = fields.iter().position(|n| n == name)?;
                elements.get(index)?.get(f)
            }
            _ => None,
        }
    }

    /// A short name of the variant, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            MatValue::Numeric { .. } => "numeric array",
            MatValue::Char { .. } => "char array",
            MatValue::Struct { .. } => "struct array",
            MatValue::Cell { .. } => "cell array",
        }
    }
}

/// A named top-level variable of a MAT-file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatVariable {
    /// Variable name (e.g. `synsets`).
    pub name: String,
    /// Its value.
    pub value: MatValue,
}

impl MatVariable {
    /// A variable named `name`.
    pub fn new(name: &str, value: MatValue) -> MatVariable {
        MatVariable {
            name: name.to_string(),
            value,
        }
    }
}

/// A parsed MAT-file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    /// The descriptive text of the header (trailing spaces/NULs removed).
    pub header_text: String,
    /// Top-level variables in file order.
    pub variables: Vec<MatVariable>,
}

impl MatFile {
    /// The variable called `name`.
    pub fn get(&self, name: &str) -> Option<&MatValue> {
        self.variables
            .iter()
            .find(|v| v.name == name)
            .map(|v| &v.value)
    }
}

/// Errors of reading or writing a MAT-file. Offsets are byte positions in
/// the file (or, inside a compressed element, in its inflated data, marked
/// as such).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatError {
    /// Not a level 5 MAT-file (bad header).
    #[error("not a MATLAB level 5 MAT-file: {0}")]
    BadHeader(String),
    /// Structurally broken data.
    #[error("malformed MAT-file at {location}: {message}")]
    Malformed {
        /// Where the problem was found.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A valid but unsupported feature (sparse arrays, objects, ...).
    #[error("unsupported MAT-file content at {location}: {message}")]
    Unsupported {
        /// Where it was found.
        location: String,
        /// What it is.
        message: String,
    },
    /// The writer was given a value it cannot represent.
    #[error("cannot write MAT-file value: {0}")]
    InvalidValue(String),
    /// I/O error while writing.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Data element type codes (`miINT8` ...).
pub(crate) mod mi {
    pub const INT8: u32 = 1;
    pub const UINT8: u32 = 2;
    pub const INT16: u32 = 3;
    pub const UINT16: u32 = 4;
    pub const INT32: u32 = 5;
    pub const UINT32: u32 = 6;
    pub const SINGLE: u32 = 7;
    pub const DOUBLE: u32 = 9;
    pub const INT64: u32 = 12;
    pub const UINT64: u32 = 13;
    pub const MATRIX: u32 = 14;
    pub const COMPRESSED: u32 = 15;
    pub const UTF8: u32 = 16;
    pub const UTF16: u32 = 17;
    pub const UTF32: u32 = 18;
}

/// Array class codes (`mxCELL_CLASS` ...) that are not numeric.
pub(crate) mod mx {
    pub const CELL: u8 = 1;
    pub const STRUCT: u8 = 2;
    pub const OBJECT: u8 = 3;
    pub const CHAR: u8 = 4;
    pub const SPARSE: u8 = 5;
}
