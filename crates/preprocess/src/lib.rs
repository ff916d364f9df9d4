//! ImageNet's distribution files to sharded 256x256 HDF5.
//!
//! See the workspace README for the output format (the contract the loader,
//! other tools and Python rely on).

pub mod devkit;
pub mod matv5;
pub mod synth;
