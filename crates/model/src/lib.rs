//! The 2012 AlexNet (Krizhevsky, Sutskever, Hinton) in Candle: the paper's
//! two-tower network, its towers placed on one or two devices, the paper's
//! initialisation and SGD.
//!
//! - [`AlexNetConfig`]: `alexnet` (the paper), `alexnet-small` (quarter
//!   width), the single-tower baseline.
//! - [`AlexNet`]: parameters in a [`candle_nn::VarMap`] under stable names
//!   ([`parameter_specs`] lists the names and their PyTorch equivalents),
//!   [`AlexNet::forward`] in [`ForwardMode::Train`] (seeded dropout) or
//!   [`ForwardMode::Eval`].
//! - [`PaperSgd`]: `v <- m v - wd lr w - lr g; w <- w + v`.
//! - [`ops`]: custom operations with their own backward passes.
//!
//! LRN follows `torch.nn.LocalResponseNorm` (alpha divided by n), k=2, n=5,
//! alpha=1e-4, beta=0.75.

mod alexnet;
mod config;
mod init;
pub mod input;
mod layers;
pub mod ops;
mod placement;
mod precision;
mod profile;
mod relu;
mod sgd;

pub use alexnet::{check_varmap, parameter_specs, AlexNet, BatchRows, ForwardMode, ParamSpec};
pub use config::{Activation, AlexNetConfig, ConfigError, SpatialSizes, Towers};
pub use init::{Init, ParseInitError};
pub use layers::use_stock_ops;
pub use ops::LrnConfig;
pub use placement::{Placement, PlacementError};
pub use precision::{precision, set_precision, ParsePrecisionError, Precision};
pub use profile::LayerTiming;
pub use sgd::PaperSgd;

/// The Candle crates this crate is built on (same versions), for users that
/// need tensors without declaring the dependency themselves.
pub use candle_core;
pub use candle_nn;
