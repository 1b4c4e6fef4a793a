//! The configuration: its schema, defaults, parsing and validation (`schema`), the
//! human-friendly units it is written in (`units`), and how the files it names are
//! opened and written safely by a root-run process (`files`). The lowest layer: it uses
//! nothing else of the crate. Everything above works on a validated `Config`.

pub mod files;
pub mod schema;
pub mod units;

pub use schema::*;
