//! matv5
