//! The native half of the npm package `coatcheck`: a thin napi-rs translation of the core
//! [`coatcheck::Store`]. Session values cross as strings (express-session stores JSON); all
//! behaviour lives in the core. The express-session `Store` subclass is in `index.js`.

#![deny(clippy::unwrap_used)]

pub mod direct;
mod error;
mod settling;
mod store;
mod text;
mod waiting;

pub use store::{NativeStore, generate_id};
