//! One photo (JPEG or PNG, told apart by its magic bytes) to the 256x256 RGB
//! image a preprocessed dataset stores: decoded, its shorter side scaled to
//! 256 and the central square kept, in one antialiased resampling pass.
//! A JPEG is decoded only where that pass reads (the crop box and the
//! filter's reach), with the same bytes as a whole decode.
//!
//! [`Decoder256`] reuses its buffers across images (the preprocess
//! pipeline's workers); [`decode_to_256`] converts one image alone (`predict`).

mod error;
mod image;
mod lanczos;
mod window;

pub use error::{DecodeError, PixelProblem};
pub use image::{
    center_crop_box, decode_to_256, DecodeOptions, Decoded, Decoder256, JpegScaling, ResizeFilter,
    DEFAULT_MAX_PIXELS, IMAGE_BYTES, MAX_SOURCE_SIDE, SIDE,
};
