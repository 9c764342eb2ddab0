//! placeholder
mod common;
mod rest_common;
