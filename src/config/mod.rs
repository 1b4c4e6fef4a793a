//! The configuration: its schema, defaults, parsing and validation (`schema`), and the
//! human-friendly units it is written in (`units`). The lowest layer: it uses nothing else
//! of the crate. Everything above works on a validated `Config`.

pub mod schema;
pub mod units;

pub use schema::*;
