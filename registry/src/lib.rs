//! placeholder
pub mod hasher;
pub mod store;
